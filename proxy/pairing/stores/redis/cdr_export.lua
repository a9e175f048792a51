-- One keyset page of {p}cdr:ended (CDR ids scored by ended_at; ties in member order).
-- ARGV: prefix, start (inclusive), end (exclusive), cursor id ('' for the first page), cursor
-- ended_at, limit. Returns {more (0/1), id, json, id, json, ...}: at most `limit` CDRs after
-- the cursor that ended in [start, end), and whether another followed.
local p = ARGV[1]
local z = p .. 'cdr:ended'
local start, stop, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local rows
if ARGV[4] == '' then
  rows = redis.call('ZRANGEBYSCORE', z, ARGV[2], '(' .. ARGV[3], 'WITHSCORES', 'LIMIT', 0, n + 1)
else
  local rank = redis.call('ZRANK', z, ARGV[4])
  if rank then
    rows = redis.call('ZRANGE', z, rank + 1, rank + n + 1, 'WITHSCORES')
  else
    -- the cursor's CDR was purged, and with it every CDR that ended no later than it did
    rows = redis.call('ZRANGEBYSCORE', z, '(' .. ARGV[5], '(' .. ARGV[3], 'WITHSCORES',
                      'LIMIT', 0, n + 1)
  end
end
local ids = {}
for i = 1, #rows, 2 do
  local score = tonumber(rows[i + 1])
  if score >= stop then break end
  if score >= start then ids[#ids + 1] = rows[i] end
end
local more = 0
if #ids > n then
  more = 1
  ids[#ids] = nil
end
local out = {more}
if #ids > 0 then
  local found = redis.call('HMGET', p .. 'cdr', unpack(ids))
  for i, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = found[i] or ''
  end
end
return out

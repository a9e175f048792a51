-- After common.lua. ARGV: prefix, number, now. Returns {'missing'} | {'busy', sides} |
-- {'ok', status, added, load}. Counts sides (a session using the number on both sides counts
-- twice), as SQLite does.
local n, now = ARGV[2], tonumber(ARGV[3])
local status = redis.call('HGET', p .. 'pool', n)
if not status then return {'missing'} end
local sides = 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'vs:' .. n)) do
  local f = redis.call('HMGET', p .. 's:' .. id, 'status', 'expires_at', 'ttl_s',
                       'last_activity', 'va', 'vb')
  if f[1] == 'open' and not due(f[2], f[3], f[4], now) then
    if f[5] == n then sides = sides + 1 end
    if f[6] == n then sides = sides + 1 end
  end
end
if sides > 0 then return {'busy', sides} end
local added = redis.call('HGET', p .. 'pool:added', n)
redis.call('HDEL', p .. 'pool', n)
redis.call('HDEL', p .. 'pool:added', n)
redis.call('ZREM', p .. 'pool:pick', n)
return {'ok', status, added, redis.call('HGET', p .. 'vload', n) or '0'}

-- After common.lua. ARGV: prefix, creation seq to start after, batch size. One batch of the
-- migration to schema 2 (see `RedisStore._migrate`): indexes each session by participant and
-- counts the open ones not yet counted. Returns the creation seq of the last session seen, or
-- false when done.
local rows = redis.call('ZRANGEBYSCORE', p .. 'all', '(' .. ARGV[2], '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[3]))
if #rows == 0 then return false end
for i = 1, #rows, 2 do
  local id = rows[i]
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'status', 'ia', 'va', 'ib', 'vb', 'cseq', 'counted')
  if f[1] then
    local count = f[1] == 'open' and not f[7]
    for _, side in ipairs({{f[2], f[3]}, {f[4], f[5]}}) do
      redis.call('ZADD', p .. 'p:' .. side[1], f[6], id)
      if count then
        vload_add(side[2], 1)
        redis.call('SADD', p .. 'vs:' .. side[2], id)
      end
    end
    if not f[7] then redis.call('HSET', h, 'counted', count and '1' or '0') end
  end
end
return rows[#rows]

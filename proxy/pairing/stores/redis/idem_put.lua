-- ARGV: prefix, hmac, record JSON, created_at, drop-before. Returns 1, or 0 if taken.
local p = ARGV[1]
local old = redis.call('ZRANGEBYSCORE', p .. 'idem:at', '-inf', '(' .. ARGV[5], 'LIMIT', 0, 1000)
for _, h in ipairs(old) do
  redis.call('DEL', p .. 'idem:' .. h)
  redis.call('ZREM', p .. 'idem:at', h)
end
if redis.call('EXISTS', p .. 'idem:' .. ARGV[2]) == 1 then return 0 end
redis.call('SET', p .. 'idem:' .. ARGV[2], ARGV[3])
redis.call('ZADD', p .. 'idem:at', ARGV[4], ARGV[2])
return 1

-- ARGV: prefix, number, status. Returns 0 when the number is not in the pool.
local p, n = ARGV[1], ARGV[2]
if redis.call('HEXISTS', p .. 'pool', n) == 0 then return 0 end
redis.call('HSET', p .. 'pool', n, ARGV[3])
if ARGV[3] == 'active' then
  redis.call('ZADD', p .. 'pool:pick', tonumber(redis.call('HGET', p .. 'vload', n) or '0'), n)
else
  redis.call('ZREM', p .. 'pool:pick', n)
end
return 1

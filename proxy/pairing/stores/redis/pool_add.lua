-- ARGV: prefix, number, now. Returns {'exists'} | {'ok', open sessions}.
local p, n = ARGV[1], ARGV[2]
if redis.call('HEXISTS', p .. 'pool', n) == 1 then return {'exists'} end
local load = tonumber(redis.call('HGET', p .. 'vload', n) or '0')
redis.call('HSET', p .. 'pool', n, 'active')
redis.call('HSET', p .. 'pool:added', n, ARGV[3])
redis.call('ZADD', p .. 'pool:pick', load, n)
return {'ok', load}

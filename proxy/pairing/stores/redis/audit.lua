-- ARGV: prefix, entry JSON, target, actor. Returns the new entry id.
local p = ARGV[1]
local id = redis.call('INCR', p .. 'audit:seq')
redis.call('HSET', p .. 'audit', id, ARGV[2])
redis.call('ZADD', p .. 'audit:ids', id, id)
redis.call('ZADD', p .. 'audit:t:' .. ARGV[3], id, id)
redis.call('ZADD', p .. 'audit:a:' .. ARGV[4], id, id)
return id

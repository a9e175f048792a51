-- ARGV: prefix, id, name, role, secret hash, now, expires_at ('' for never).
-- Returns 'ok' | 'name' | 'hash'.
local p, id, name, hash = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
if redis.call('HEXISTS', p .. 'tok:name', name) == 1 then return 'name' end
if redis.call('HEXISTS', p .. 'tok:hash', hash) == 1 then return 'hash' end
redis.call('HSET', p .. 'tk:' .. id, 'name', name, 'role', ARGV[4], 'secret_hash', hash,
           'created_at', ARGV[6], 'revoked_at', '', 'expires_at', ARGV[7])
redis.call('ZADD', p .. 'tok:ids', redis.call('INCR', p .. 'tok:seq'), id)
redis.call('HSET', p .. 'tok:name', name, id)
redis.call('HSET', p .. 'tok:hash', hash, id)
return 'ok'

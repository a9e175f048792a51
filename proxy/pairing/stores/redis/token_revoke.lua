-- ARGV: prefix, id or name, now. Returns the id revoked (or revoked before), false if none.
local p, token = ARGV[1], ARGV[2]
local id = token
if redis.call('EXISTS', p .. 'tk:' .. id) == 0 then
  id = redis.call('HGET', p .. 'tok:name', token)
  if not id then return false end
end
local h = p .. 'tk:' .. id
if redis.call('HGET', h, 'revoked_at') == '' then
  redis.call('HSET', h, 'revoked_at', ARGV[3])
  local name = redis.call('HGET', h, 'name')
  if redis.call('HGET', p .. 'tok:name', name) == id then
    redis.call('HDEL', p .. 'tok:name', name)
  end
end
return id

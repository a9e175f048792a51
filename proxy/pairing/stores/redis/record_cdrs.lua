-- ARGV: prefix, then (json, session id or '', ended_at) triples. Returns how many written.
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 3 do
  local id = redis.call('INCR', p .. 'cdr:seq')
  redis.call('HSET', p .. 'cdr', id, ARGV[i])
  redis.call('ZADD', p .. 'cdr:ids', id, id)
  redis.call('ZADD', p .. 'cdr:ended', ARGV[i + 2], id)
  if ARGV[i + 1] ~= '' then redis.call('ZADD', p .. 'cdr:s:' .. ARGV[i + 1], id, id) end
  n = n + 1
end
return n

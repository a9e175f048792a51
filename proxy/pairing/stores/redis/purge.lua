-- ARGV: prefix, older_than, batch. Returns {sessions deleted, CDRs deleted} for one batch.
local p = ARGV[1]
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', p .. 'ended', '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local ix = redis.call('HMGET', p .. 's:' .. id, 'ia', 'ib')
  for _, index in ipairs(ix) do
    if index then redis.call('ZREM', p .. 'p:' .. index, id) end
  end
  redis.call('DEL', p .. 's:' .. id)
  for _, z in ipairs({'all', 'st:closed', 'st:expired', 'changes', 'ended'}) do
    redis.call('ZREM', p .. z, id)
  end
end
local cdrs = redis.call('ZRANGEBYSCORE', p .. 'cdr:ended', '-inf', '(' .. ARGV[2],
                        'LIMIT', 0, limit)
for _, id in ipairs(cdrs) do
  local raw = redis.call('HGET', p .. 'cdr', id)
  if raw then
    local sid = cjson.decode(raw)['session_id']
    if type(sid) == 'string' then redis.call('ZREM', p .. 'cdr:s:' .. sid, id) end
  end
  redis.call('HDEL', p .. 'cdr', id)
  redis.call('ZREM', p .. 'cdr:ids', id)
  redis.call('ZREM', p .. 'cdr:ended', id)
end
return {#ids, #cdrs}

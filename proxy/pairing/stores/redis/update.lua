-- After common.lua. ARGV: prefix, id, now, expires_at, ttl_s (each 'keep', '' for none, or a
-- value), policy ('keep' or its JSON). Returns 'missing' | 'inactive' | 'ok'.
local id, now = ARGV[2], tonumber(ARGV[3])
local h = p .. 's:' .. id
local f = redis.call('HMGET', h, 'status', 'expires_at', 'ttl_s', 'last_activity')
if not f[1] then return 'missing' end
if f[1] ~= 'open' or due(f[2], f[3], f[4], now) then return 'inactive' end
local ea, ttl = ARGV[4], ARGV[5]
if ea == 'keep' then ea = f[2] end
if ttl == 'keep' then ttl = f[3] end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', h, 'expires_at', ea, 'ttl_s', ttl, 'seq', seq)
if ARGV[6] ~= 'keep' then redis.call('HSET', h, 'policy', ARGV[6]) end
redis.call('ZADD', p .. 'changes', seq, id)
local d = nil
if ea ~= '' then d = tonumber(ea) end
if ttl ~= '' then
  local t = tonumber(f[4]) + tonumber(ttl)
  if d == nil or t < d then d = t end
end
if d then redis.call('ZADD', p .. 'deadline', d, id) else redis.call('ZREM', p .. 'deadline', id) end
return 'ok'

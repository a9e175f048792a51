-- Shared helpers (`p`, the key prefix from ARGV[1]; `due`; `vload_add`; `set_status`), loaded
-- before the scripts that read deadlines or change a session's status.
local p = ARGV[1]
local function due(ea, ttl, la, now)
  if ea and ea ~= '' and tonumber(ea) <= now then return true end
  if ttl and ttl ~= '' and tonumber(la) + tonumber(ttl) <= now then return true end
  return false
end
-- Open sessions per virtual number, mirrored into the pool's pick order when it is active.
local function vload_add(virtual, delta)
  local n = redis.call('HINCRBY', p .. 'vload', virtual, delta)
  if n <= 0 then redis.call('HDEL', p .. 'vload', virtual) end
  redis.call('ZADD', p .. 'pool:pick', 'XX', n, virtual)
end
local function set_status(id, status, now_s)
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'ia', 'va', 'ib', 'vb', 'cseq', 'counted')
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('HSET', h, 'status', status, 'ended_at', now_s, 'seq', seq, 'counted', '0')
  redis.call('ZREM', p .. 'st:open', id)
  redis.call('ZADD', p .. 'st:' .. status, f[5], id)
  redis.call('ZADD', p .. 'changes', seq, id)
  redis.call('ZREM', p .. 'deadline', id)
  redis.call('ZADD', p .. 'ended', now_s, id)
  for _, pair in ipairs({{f[1], f[2]}, {f[3], f[4]}}) do
    local bk = p .. 'busy:' .. pair[1] .. ':' .. pair[2]
    if redis.call('GET', bk) == id then redis.call('DEL', bk) end
    if f[6] == '1' then vload_add(pair[2], -1) end
    redis.call('SREM', p .. 'vs:' .. pair[2], id)
  end
end

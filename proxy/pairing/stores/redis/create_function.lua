-- After common.lua. `create(a)` inserts an open session unless a participant is busy on its
-- virtual number. `a` holds ARGV[2..16] of create.lua: id, now, kc, mode, na, ia, va, nb, ib,
-- vb, expires_at, ttl_s, metadata, deadline, policy (JSON). Returns {'ok'} | {'conflict', 'A'|'B', holder id}
-- | {'key'} | {'rotating'}
local function create(a)
local meta = redis.call('HMGET', p .. 'meta', 'key_check', 'rotation')
if meta[2] then return {'rotating'} end
if not meta[1] then
  -- no key check: a Redis that came back empty (flushed, restarted without its data). Adopt
  -- ours, as opening the store does (HSETNX); readers notice by the new epoch and reload.
  redis.call('HSET', p .. 'meta', 'key_check', a[3])
elseif meta[1] ~= a[3] then return {'key'} end
local id, now_s = a[1], a[2]
local now = tonumber(now_s)
local sides = {{'A', a[6], a[7]}, {'B', a[9], a[10]}}
local stale = {}
for _, side in ipairs(sides) do
  local bk = p .. 'busy:' .. side[2] .. ':' .. side[3]
  local holder = redis.call('GET', bk)
  if holder then
    local f = redis.call('HMGET', p .. 's:' .. holder, 'status', 'expires_at', 'ttl_s',
                         'last_activity')
    if f[1] == 'open' then
      if due(f[2], f[3], f[4], now) then
        table.insert(stale, holder)
      else
        return {'conflict', side[1], holder}
      end
    else
      redis.call('DEL', bk)
    end
  end
end
for _, holder in ipairs(stale) do
  if redis.call('HGET', p .. 's:' .. holder, 'status') == 'open' then
    set_status(holder, 'expired', now_s)
  end
end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', p .. 's:' .. id, 'seq', seq, 'cseq', seq, 'status', 'open', 'mode', a[4],
  'na', a[5], 'ia', a[6], 'va', a[7], 'nb', a[8], 'ib', a[9], 'vb', a[10],
  'created_at', now_s, 'expires_at', a[11], 'ttl_s', a[12], 'last_activity', now_s,
  'ended_at', '', 'metadata', a[13], 'kc', a[3], 'counted', '1', 'policy', a[15])
redis.call('ZADD', p .. 'all', seq, id)
redis.call('ZADD', p .. 'st:open', seq, id)
redis.call('ZADD', p .. 'changes', seq, id)
if a[14] ~= '' then redis.call('ZADD', p .. 'deadline', a[14], id) end
for _, side in ipairs(sides) do
  redis.call('SET', p .. 'busy:' .. side[2] .. ':' .. side[3], id)
  redis.call('ZADD', p .. 'p:' .. side[2], seq, id)
  vload_add(side[3], 1)
  redis.call('SADD', p .. 'vs:' .. side[3], id)
end
return {'ok'}
end

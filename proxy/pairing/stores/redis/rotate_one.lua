-- ARGV: prefix, id, old kc, new kc, na, ia, nb, ib. Re-keys one session unless already done.
local p, id = ARGV[1], ARGV[2]
local h = p .. 's:' .. id
local f = redis.call('HMGET', h, 'kc', 'status', 'ia', 'va', 'ib', 'vb', 'cseq')
if f[1] ~= ARGV[3] then return 0 end
for _, move in ipairs({{f[3], ARGV[6]}, {f[5], ARGV[8]}}) do
  redis.call('ZREM', p .. 'p:' .. move[1], id)
  redis.call('ZADD', p .. 'p:' .. move[2], f[7], id)
end
if f[2] == 'open' then
  for _, side in ipairs({{f[3], f[4], ARGV[6]}, {f[5], f[6], ARGV[8]}}) do
    local old = p .. 'busy:' .. side[1] .. ':' .. side[2]
    if redis.call('GET', old) == id then
      redis.call('DEL', old)
      redis.call('SET', p .. 'busy:' .. side[3] .. ':' .. side[2], id)
    end
  end
end
redis.call('HSET', h, 'kc', ARGV[4], 'na', ARGV[5], 'ia', ARGV[6], 'nb', ARGV[7], 'ib', ARGV[8])
return 1

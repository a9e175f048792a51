-- ARGV: prefix, then (id, now) pairs. Moves last_activity (never backwards) and the deadline.
local p = ARGV[1]
for i = 2, #ARGV, 2 do
  local id, now_s = ARGV[i], ARGV[i + 1]
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'status', 'last_activity', 'expires_at', 'ttl_s')
  if f[1] == 'open' and tonumber(now_s) > tonumber(f[2]) then
    redis.call('HSET', h, 'last_activity', now_s)
    if f[4] ~= '' then
      local d = tonumber(now_s) + tonumber(f[4])
      if f[3] ~= '' and tonumber(f[3]) < d then d = tonumber(f[3]) end
      redis.call('ZADD', p .. 'deadline', d, id)
    end
  end
end
return 0

-- After common.lua. `active_holder(bk, now)`: true when the busy key `bk` names an open
-- session that is not past its deadline.
local function active_holder(bk, now)
  local holder = redis.call('GET', bk)
  if not holder then return false end
  local f = redis.call('HMGET', p .. 's:' .. holder, 'status', 'expires_at', 'ttl_s',
                       'last_activity')
  return f[1] == 'open' and not due(f[2], f[3], f[4], now)
end

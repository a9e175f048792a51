-- After common.lua. ARGV: prefix, id, now. Returns 0 for an unknown id, 1 otherwise.
local status = redis.call('HGET', p .. 's:' .. ARGV[2], 'status')
if not status then return 0 end
if status == 'open' then set_status(ARGV[2], 'closed', ARGV[3]) end
return 1

-- ARGV: prefix, dead worker, claiming worker, now. Moves the dead worker's dialog records to
-- the claiming worker if the dead one's lease ended before now (or it has none); returns
-- {key1, record1, key2, record2, ...} of what was moved, {} if the lease is still running.
-- Atomic: two siblings claiming at once get the records once.
local p = ARGV[1]
local leases = p .. 'workers'
local expires = tonumber(redis.call('HGET', leases, ARGV[2]) or '0')
if expires >= tonumber(ARGV[4]) then
  return {}
end
local records = p .. 'dialogs'
local from = p .. 'dialogs:' .. ARGV[2]
local to = p .. 'dialogs:' .. ARGV[3]
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', from)) do
  local record = redis.call('HGET', records, key)
  if record then
    redis.call('SADD', to, key)
    redis.call('HSET', p .. 'dialog_owner', key, ARGV[3])
    out[#out + 1] = key
    out[#out + 1] = record
  end
end
redis.call('DEL', from)
redis.call('HDEL', leases, ARGV[2])
return out

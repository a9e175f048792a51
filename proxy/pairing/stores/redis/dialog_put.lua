-- ARGV: prefix, worker, n_deleted, key..., then key, record pairs. Deletes the records of the
-- deleted keys (whoever holds them) and writes the others as the worker's, in one step.
local p = ARGV[1]
local records = p .. 'dialogs'
local owners = p .. 'dialog_owner'
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  local key = ARGV[i]
  local owner = redis.call('HGET', owners, key)
  if owner then
    redis.call('SREM', p .. 'dialogs:' .. owner, key)
    redis.call('HDEL', owners, key)
  end
  redis.call('HDEL', records, key)
end
local mine = p .. 'dialogs:' .. ARGV[2]
for i = 4 + n, #ARGV, 2 do
  local key = ARGV[i]
  local owner = redis.call('HGET', owners, key)
  if owner and owner ~= ARGV[2] then
    redis.call('SREM', p .. 'dialogs:' .. owner, key)
  end
  redis.call('HSET', records, key, ARGV[i + 1])
  redis.call('HSET', owners, key, ARGV[2])
  redis.call('SADD', mine, key)
end
if #ARGV >= 4 + n then
  redis.call('SADD', p .. 'dialog_workers', ARGV[2])
end
return 0

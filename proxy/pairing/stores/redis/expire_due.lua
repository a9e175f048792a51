-- After common.lua. ARGV: prefix, now. Returns the ids expired, in creation order.
local ids = redis.call('ZRANGEBYSCORE', p .. 'deadline', '-inf', ARGV[2])
local rows = {}
for _, id in ipairs(ids) do
  table.insert(rows, {id, tonumber(redis.call('HGET', p .. 's:' .. id, 'cseq'))})
end
table.sort(rows, function(x, y) return x[2] < y[2] end)
local out = {}
for _, row in ipairs(rows) do
  set_status(row[1], 'expired', ARGV[2])
  table.insert(out, row[1])
end
return out

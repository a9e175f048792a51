-- ARGV: prefix, seq, limit. Returns {id, seq, fields...} flattened per session, oldest first.
local p = ARGV[1]
local rows = redis.call('ZRANGEBYSCORE', p .. 'changes', '(' .. ARGV[2], '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #rows, 2 do
  table.insert(out, {rows[i], rows[i + 1], redis.call('HGETALL', p .. 's:' .. rows[i])})
end
return out

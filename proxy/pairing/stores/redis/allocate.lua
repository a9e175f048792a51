-- After common.lua, create_function.lua and active_holder.lua.
-- ARGV: prefix, the 15 arguments of `create` (va / vb '' to pick), draw A, draw B. At most
-- 16 ties are collected, as in SqliteStore.
-- Returns create's answer with the virtual numbers used appended on 'ok', or
-- {'exhausted', 'A'|'B'} | {'draining', 'A'|'B'}.
local a = {unpack(ARGV, 2, 16)}
local now = tonumber(a[2])
local pending = {}
local function pick(index, draw)
  local ties, best, start, stop = {}, nil, 0, false
  while not stop do
    local rows = redis.call('ZRANGE', p .. 'pool:pick', start, start + 99, 'WITHSCORES')
    if #rows == 0 then break end
    for i = 1, #rows, 2 do
      local number, used = rows[i], tonumber(rows[i + 1])
      if not active_holder(p .. 'busy:' .. index .. ':' .. number, now) then
        if best ~= nil and (used > best or (used == best and #ties >= 16)) then
          stop = true
          break
        end
        local load = used + (pending[number] or 0)
        if best == nil or load < best then
          best, ties = load, {number}
        elseif load == best and #ties < 16 then
          table.insert(ties, number)
        end
      end
    end
    start = start + 100
  end
  if #ties == 0 then return nil end
  return ties[math.floor(tonumber(draw) * #ties) + 1]
end
for _, side in ipairs({{'A', 6, 7, ARGV[17]}, {'B', 9, 10, ARGV[18]}}) do
  local virtual = a[side[3]]
  if virtual == '' then
    virtual = pick(a[side[2]], side[4])
    if not virtual then return {'exhausted', side[1]} end
    a[side[3]] = virtual
  elseif redis.call('HGET', p .. 'pool', virtual) == 'draining' then
    return {'draining', side[1]}
  end
  pending[virtual] = (pending[virtual] or 0) + 1
end
local out = create(a)
if out[1] == 'ok' then return {'ok', a[7], a[10]} end
return out

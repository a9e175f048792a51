-- ARGV: prefix, a fresh random epoch. Returns the store's epoch: the one already there, or the
-- fresh one when the meta hash has none (a new store, or a Redis that came back empty).
local meta = ARGV[1] .. 'meta'
redis.call('HSETNX', meta, 'epoch', ARGV[2])
return redis.call('HGET', meta, 'epoch')

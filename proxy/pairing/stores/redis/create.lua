-- After common.lua and create_function.lua. ARGV: prefix, then the arguments of `create`.
return create({unpack(ARGV, 2, 16)})

-- Inline update: the write.
if outcome == NEEDS_INDEX then return {NEEDS_INDEX, record} end
if CURRENT ~= PREVIOUS then redis.call('UNLINK', PREVIOUS) end
redis.call('SET', CURRENT, VALUE, 'PXAT', DEADLINE)
local index = KEYS[6]

-- Staged update: the write (the staged value is renamed into place).
if outcome ~= UPDATED then
  redis.call('UNLINK', STAGED)
  if outcome == NEEDS_INDEX then return {NEEDS_INDEX, record} end
  return outcome
end
if CURRENT ~= PREVIOUS then redis.call('UNLINK', PREVIOUS) end
redis.call('RENAME', STAGED, CURRENT)
redis.call('PEXPIREAT', CURRENT, DEADLINE)
local index = KEYS[7]

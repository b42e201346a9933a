-- Inline update: the checks. Only the 16-byte header of the old value enters Lua.
local head = redis.call('GETRANGE', PREVIOUS, 0, 15)
local outcome = UPDATED
if string.len(head) < 16 then
  if head == '' and redis.call('EXISTS', PREVIOUS) == 0 then return NOT_FOUND end
  return redis.error_reply('CORRUPT stored session is shorter than its header')
end
if string.sub(head, 1, 8) ~= EXPECTED then return CONFLICT end
if CURRENT ~= PREVIOUS and redis.call('EXISTS', CURRENT) == 1 then return ID_TAKEN end

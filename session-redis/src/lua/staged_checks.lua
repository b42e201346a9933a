-- Staged update: the checks. The new value waits under the staging key, removed whatever the
-- outcome.
local STAGED = KEYS[6]
local head = redis.call('GETRANGE', PREVIOUS, 0, 15)
local outcome = UPDATED
if string.len(head) < 16 then
  if head == '' and redis.call('EXISTS', PREVIOUS) == 0 then
    outcome = NOT_FOUND
  else
    redis.call('UNLINK', STAGED)
    return redis.error_reply('CORRUPT stored session is shorter than its header')
  end
elseif string.sub(head, 1, 8) ~= EXPECTED then
  outcome = CONFLICT
elseif CURRENT ~= PREVIOUS and redis.call('EXISTS', CURRENT) == 1 then
  outcome = ID_TAKEN
elseif redis.call('EXISTS', STAGED) == 0 then
  return redis.error_reply('STAGED the staged value is gone; nothing was changed')
end

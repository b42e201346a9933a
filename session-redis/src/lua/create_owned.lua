-- Creates an owned session. Keys: the session, its owner record. Arguments: the value, the
-- deadline, the owner record. Replies CREATED or ID_TAKEN (src/scripts.rs names them too).
local SESSION, OWNER_RECORD = KEYS[1], KEYS[2]
local VALUE, DEADLINE, RECORD = ARGV[1], ARGV[2], ARGV[3]
local ID_TAKEN, CREATED = 0, 1
if redis.call('SET', SESSION, VALUE, 'NX', 'PXAT', DEADLINE) then
  redis.call('SET', OWNER_RECORD, RECORD, 'PXAT', DEADLINE)
  return CREATED
end
return ID_TAKEN

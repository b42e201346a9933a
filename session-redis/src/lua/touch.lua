-- Moves the expiry of a session (in the value and the key's deadline) and of its owner record,
-- if it exists. Keys: the session, its owner record. Arguments: the expiry (8 bytes, written
-- into the value's header), the deadline. Replies TOUCHED, or ABSENT when there is no session.
local SESSION, OWNER_RECORD = KEYS[1], KEYS[2]
local EXPIRY, DEADLINE = ARGV[1], ARGV[2]
local ABSENT, TOUCHED = 0, 1
local len = redis.call('STRLEN', SESSION)
if len == 0 then return ABSENT end
if len < 16 then return redis.error_reply('CORRUPT stored session is shorter than its header') end
redis.call('SETRANGE', SESSION, 8, EXPIRY)
redis.call('PEXPIREAT', SESSION, DEADLINE)
redis.call('PEXPIREAT', OWNER_RECORD, DEADLINE)
return TOUCHED

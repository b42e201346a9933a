-- Deletes the session an owner index member names, following forward markers to where it was
-- rotated (a rotation stays in its hash slot, so every hop is in this script's slot), if its
-- owner is OWNER and it is not EXCEPT (hex, or ''). Keys: the member's session, owner record
-- and forward marker. Arguments: OWNER, EXCEPT, the key names' base (prefix, and hash tag in
-- cluster mode). Replies REVOKED when a live session was deleted, KEPT otherwise.
local s, r, f = KEYS[1], KEYS[2], KEYS[3]
local OWNER, EXCEPT, BASE = ARGV[1], ARGV[2], ARGV[3]
local KEPT, REVOKED = 0, 1
local hops = 0
while redis.call('EXISTS', s) == 0 do
  local nxt = redis.call('GET', f)
  if not nxt or hops >= 64 then return KEPT end
  s = BASE .. nxt
  r = s .. ':o'
  f = s .. ':f'
  hops = hops + 1
end
if string.sub(s, -64) == EXCEPT then return KEPT end
local record = redis.call('GET', r)
if not record then return KEPT end
local cut = string.find(record, '\0', 1, true)
local owner = cut and string.sub(record, 1, cut - 1) or record
if owner ~= OWNER then return KEPT end
redis.call('UNLINK', s, r)
return REVOKED

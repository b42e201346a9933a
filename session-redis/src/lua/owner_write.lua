-- After the session is written: the owner record follows it (or is set or cleared), with the
-- session's deadline; a rotated owned session leaves a forward marker at its old key, which
-- revoke_owner follows.
local newrec = record
if MODE == SET then newrec = NEW_RECORD elseif MODE == CLEAR then newrec = false end
if record and CURRENT_OWNER ~= PREVIOUS_OWNER then redis.call('UNLINK', PREVIOUS_OWNER) end
if newrec then
  redis.call('SET', CURRENT_OWNER, newrec, 'PXAT', DEADLINE)
elseif record then
  redis.call('UNLINK', CURRENT_OWNER)
end
if record and CURRENT ~= PREVIOUS then
  redis.call('SET', FORWARD, string.sub(CURRENT, -64), 'PXAT', DEADLINE)
  -- On a single server the index of INDEXED_OWNER comes along: the old key leaves it.
  if index then
    local cut = string.find(record, '\0', 1, true)
    local owner = cut and string.sub(record, 1, cut - 1) or record
    if owner == INDEXED_OWNER then redis.call('ZREM', index, string.sub(PREVIOUS, -64)) end
  end
end
return UPDATED

-- After the checks (outcome UPDATED): reads the owner record, and asks for the owner's index
-- first when a plain rotation moves an owned session.
local record = false
if outcome == UPDATED then
  record = redis.call('GET', PREVIOUS_OWNER)
  if record and MODE == KEEP and CURRENT ~= PREVIOUS then
    local cut = string.find(record, '\0', 1, true)
    local owner = cut and string.sub(record, 1, cut - 1) or record
    if owner ~= INDEXED_OWNER then outcome = NEEDS_INDEX end
  end
end

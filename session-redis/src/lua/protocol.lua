-- The update scripts' protocol; src/scripts.rs names the same positions and values, and its
-- tests check that the two agree.
-- Keys, in the order the client sends them. Then the staging key (staged script only) and, on
-- a single server, the index of INDEXED_OWNER, from which a rotation removes the old key.
local CURRENT, PREVIOUS = KEYS[1], KEYS[2]
local CURRENT_OWNER, PREVIOUS_OWNER, FORWARD = KEYS[3], KEYS[4], KEYS[5]
-- Arguments: the expected version (8 bytes), the new value (inline script only), the deadline,
-- the owner mode, the new owner record (mode SET), the owner whose index lists CURRENT already.
local EXPECTED, VALUE, DEADLINE = ARGV[1], ARGV[2], ARGV[3]
local MODE, NEW_RECORD, INDEXED_OWNER = ARGV[4], ARGV[5], ARGV[6]
-- Owner modes: keep the record's owner, set NEW_RECORD, clear it.
local KEEP, SET, CLEAR = 'k', 's', 'c'
-- Replies; NEEDS_INDEX comes as {NEEDS_INDEX, owner record}: a plain rotation of an owned
-- session needs its owner's index to list CURRENT first (nothing changed).
local NOT_FOUND, UPDATED, CONFLICT, ID_TAKEN, NEEDS_INDEX = 0, 1, 2, 3, 4

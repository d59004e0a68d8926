-- One endpoint's judgement applied atomically in its hash slot `{svc|ep}` (every key here
-- carries the tag, so this runs on a Redis Cluster too): its new detector state, its
-- judged intervals deleted, its incidents' hashes written, and the publications still to
-- make (entries for `<p>incidents`, the open/closed/intervals index updates, which live in
-- other slots) recorded as one pending record. pipeline/incidents/stage.py publishes the
-- record by idempotent steps, then deletes it.
-- KEYS: 1 state HASH, 2 pending record, then ARGV[3] interval HASHes, then incident HASHes.
-- ARGV: 1 state TTL (s), 2 closed incident TTL (s), 3 number of interval keys,
--       4 the pending record ('' when there is nothing to publish), 5 number of state
--       field/value pairs, then those pairs; then per incident key: 'open' or 'closed',
--       its number of field/value pairs, the pairs.
-- Returns 1, or 0 without writing when a pending record is still there (the caller must
-- publish it first: judging on top of it would lose its publications).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local n_intervals = tonumber(ARGV[3])
local at = 5
local n = tonumber(ARGV[at])
redis.call('DEL', KEYS[1])
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, at + 1, at + 2 * n))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
at = at + 2 * n + 1
for i = 3, 2 + n_intervals do
  redis.call('DEL', KEYS[i])
end
for i = 3 + n_intervals, #KEYS do
  local kind = ARGV[at]
  local m = tonumber(ARGV[at + 1])
  redis.call('HSET', KEYS[i], unpack(ARGV, at + 2, at + 1 + 2 * m))
  if kind == 'closed' then
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
  at = at + 2 + 2 * m
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4])
end
return 1

-- Slot mode (a Redis Cluster): the dirty marks of one hash slot were published to the
-- dirty stream; flag them so (pipeline/ingest/slots.py calls it after the XADD).
-- KEYS: mark keys (one slot). ARGV: 1 the marks' TTL (s), then per key the window it was
-- published for. A mark rewritten meanwhile (a later window, by another consumer) is left
-- alone: its own publisher flags it.
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] .. '!' then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
    n = n + 1
  end
end
return n

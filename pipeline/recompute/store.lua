-- Store one chunk of baselines (pipeline/recompute/stage.py calls it once per chunk).
-- KEYS: one baseline hash per bucket. ARGV: the TTL, then per bucket p50, p95, mad, count,
-- updated_ms; a count of 0 (the samples expired) deletes the baseline instead.
local ttl = ARGV[1]
for i = 1, #KEYS do
  local a = 2 + 5 * (i - 1)
  if ARGV[a + 3] == '0' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('HSET', KEYS[i], 'p50', ARGV[a], 'p95', ARGV[a + 1], 'mad', ARGV[a + 2],
               'count', ARGV[a + 3], 'updated_ms', ARGV[a + 4])
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return #KEYS

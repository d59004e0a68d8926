-- Apply one batch of validated trace events atomically (pipeline/ingest.py builds the call).
--
-- KEYS: 1 traces stream, 2 dirty stream, 3 anomalies stream,
--       then per bucket b (1..nb): dur list, dirty mark; then one seen key per event.
-- ARGV: 1 group, 2 window_s, 3 seen_ttl_s, 4 bucket_ttl_s, 5 window_size,
--       6 anomalies_maxlen, 7 nb, 8 n_ids, then n_ids stream IDs to XACK,
--       then per bucket: bucket_id, n_events, and per event: dur_us, nf, nf anomaly fields.
-- Returns {new, duplicate, marked_dirty, anomalies_recorded}.
--
-- Dedup, push, trim, dirty mark and ack happen in one step: a consumer killed at any
-- instant either did all of it (the entry is acked) or none (it is redelivered and the
-- seen key, absent, lets it count once).
local group = ARGV[1]
local window_s = tonumber(ARGV[2])
local seen_ttl = ARGV[3]
local bucket_ttl = ARGV[4]
local window_size = tonumber(ARGV[5])
local anomalies_maxlen = ARGV[6]
local nb = tonumber(ARGV[7])
local n_ids = tonumber(ARGV[8])

-- The server's clock defines windows, so every consumer agrees on them.
local now = redis.call('TIME')
local window = tostring(math.floor(tonumber(now[1]) / window_s))
local mark_ttl = window_s * 2

local new, dup, marked, flagged = 0, 0, 0, 0
local a = 9 + n_ids
local s = 4 + 2 * nb
for b = 1, nb do
  local dur_key = KEYS[2 + 2 * b]
  local mark_key = KEYS[3 + 2 * b]
  local bucket_id = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local fresh = {}
  for _ = 1, n do
    local nf = tonumber(ARGV[a + 1])
    if redis.call('SET', KEYS[s], '1', 'NX', 'EX', seen_ttl) then
      fresh[#fresh + 1] = ARGV[a]
      if nf > 0 then
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', anomalies_maxlen, '*', unpack(ARGV, a + 2, a + 1 + nf))
        flagged = flagged + 1
      end
    else
      dup = dup + 1
    end
    a = a + 2 + nf
    s = s + 1
  end
  if #fresh > 0 then
    new = new + #fresh
    local len = redis.call('LPUSH', dur_key, unpack(fresh))
    if len > window_size then
      redis.call('LTRIM', dur_key, 0, window_size - 1)
    end
    redis.call('EXPIRE', dur_key, bucket_ttl)
    if redis.call('SET', mark_key, window, 'GET', 'EX', mark_ttl) ~= window then
      redis.call('XADD', KEYS[2], '*', 'bucket', bucket_id, 'window', window)
      marked = marked + 1
    end
  end
end
if n_ids > 0 then
  redis.call('XACK', KEYS[1], group, unpack(ARGV, 9, 8 + n_ids))
end
return {new, dup, marked, flagged}

-- Apply one batch of validated trace events atomically (pipeline/ingest.py builds the call).
--
-- KEYS: 1 traces stream, 2 dirty stream, 3 anomalies stream,
--       then per bucket b (1..nb): dur list, dirty mark, the service's endpoint index;
--       then one seen key per event.
-- ARGV: 1 group, 2 window_s, 3 seen_ttl_s, 4 bucket_ttl_s, 5 window_size,
--       6 anomalies_maxlen, 7 nb, 8 max_endpoints (0: no cap),
--       then per bucket: bucket_id, endpoint, n_events,
--       and per event: stream id, dur_us, nf, nf anomaly fields.
-- Returns {new, duplicate, marked_dirty, anomalies_recorded, capped bucket ordinals...}.
--
-- Dedup, push, trim, dirty mark and ack happen in one step: a consumer killed at any
-- instant either did all of it (the entry is acked) or none (it is redelivered and the
-- seen key, absent, lets it count once).
--
-- The endpoint index (ZSET endpoint -> last seen, unix s) caps how many endpoints one
-- service may track. Events of a bucket whose endpoint would exceed the cap are left
-- unacked and returned, so the caller dead-letters them with the reason (a crash before
-- it does just redelivers them: nothing is silently dropped).
local group = ARGV[1]
local window_s = tonumber(ARGV[2])
local seen_ttl = ARGV[3]
local bucket_ttl = tonumber(ARGV[4])
local window_size = tonumber(ARGV[5])
local anomalies_maxlen = ARGV[6]
local nb = tonumber(ARGV[7])
local max_endpoints = tonumber(ARGV[8])

-- The server's clock defines windows, so every consumer agrees on them.
local now = redis.call('TIME')
local now_s = tonumber(now[1])
local window = tostring(math.floor(now_s / window_s))
local mark_ttl = window_s * 2

-- Fail before the first write, never half-way: Redis does not roll back a script that
-- errors, so a WRONGTYPE after some SET NX would make their samples look counted.
local expected = {'stream', 'stream', 'stream'}
for b = 1, nb do
  expected[3 * b + 1], expected[3 * b + 2], expected[3 * b + 3] = 'list', 'string', 'zset'
end
for i, want in ipairs(expected) do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want)
  end
end

-- May this bucket's endpoint be tracked? Endpoints idle past the bucket TTL (their
-- samples are gone) free their slot.
local function admit(index_key, endpoint)
  if max_endpoints <= 0 then
    return true
  end
  if not redis.call('ZSCORE', index_key, endpoint) then
    if redis.call('ZCARD', index_key) >= max_endpoints then
      redis.call('ZREMRANGEBYSCORE', index_key, '-inf', now_s - bucket_ttl)
      if redis.call('ZCARD', index_key) >= max_endpoints then
        return false
      end
    end
  end
  redis.call('ZADD', index_key, now_s, endpoint)
  redis.call('EXPIRE', index_key, bucket_ttl)
  return true
end

local new, dup, marked, flagged = 0, 0, 0, 0
local capped = {}
local acks = {}
local a = 9
local s = 4 + 3 * nb
for b = 1, nb do
  local dur_key = KEYS[1 + 3 * b]
  local mark_key = KEYS[2 + 3 * b]
  local index_key = KEYS[3 + 3 * b]
  local bucket_id = ARGV[a]
  local endpoint = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  a = a + 3
  local tracked = admit(index_key, endpoint)
  if not tracked then
    capped[#capped + 1] = b
  end
  local fresh = {}
  for _ = 1, n do
    local nf = tonumber(ARGV[a + 2])
    if tracked then
      acks[#acks + 1] = ARGV[a]
      if redis.call('SET', KEYS[s], '1', 'NX', 'EX', seen_ttl) then
        fresh[#fresh + 1] = ARGV[a + 1]
        if nf > 0 then
          redis.call('XADD', KEYS[3], 'MAXLEN', '~', anomalies_maxlen, '*',
                     unpack(ARGV, a + 3, a + 2 + nf))
          flagged = flagged + 1
        end
      else
        dup = dup + 1
      end
    end
    a = a + 3 + nf
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
if #acks > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acks))
end
local out = {new, dup, marked, flagged}
for _, b in ipairs(capped) do
  out[#out + 1] = b
end
return out

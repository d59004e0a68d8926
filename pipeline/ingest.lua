-- Apply one batch of validated trace events atomically (pipeline/ingest.py builds the call).
--
-- KEYS: 1 traces stream, 2 dirty stream, 3 anomalies stream,
--       then per bucket b (1..nb): dur list, dirty mark, the service's endpoint index;
--       then one seen key per event, in bucket order.
-- ARGV: 1 group, 2 window_s, 3 seen_ttl_s, 4 bucket_ttl_s, 5 window_size,
--       6 anomalies_maxlen, 7 nb, 8 max_endpoints (0: no cap), 9 n events,
--       10 na = how many ARGV the anomaly section takes,
--       then the anomaly section: per flagged event its ordinal (1..n, bucket order),
--       nf and nf anomaly fields;
--       then the n stream ids, in bucket order;
--       then per bucket: bucket_id, endpoint, n_events, n_events durations (us).
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
--
-- Per-bucket bookkeeping is once per window, not once per batch: a bucket whose mark
-- already holds the current window was admitted, typed and given its TTLs by an earlier
-- call in this window, so only its dur list's type is checked again.
local group = ARGV[1]
local window_s = tonumber(ARGV[2])
local seen_ttl = ARGV[3]
local bucket_ttl = tonumber(ARGV[4])
local window_size = tonumber(ARGV[5])
local anomalies_maxlen = ARGV[6]
local nb = tonumber(ARGV[7])
local max_endpoints = tonumber(ARGV[8])
local n_events = tonumber(ARGV[9])
local na = tonumber(ARGV[10])
local first_id = 11 + na

-- The server's clock defines windows, so every consumer agrees on them.
local now = redis.call('TIME')
local now_s = tonumber(now[1])
local window = tostring(math.floor(now_s / window_s))
local mark_ttl = window_s * 2

-- Fail before the first write, never half-way: Redis does not roll back a script that
-- errors, so a WRONGTYPE after some SET NX would make their samples look counted.
local function wrong_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return 'WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. want
  end
  return nil
end

for i = 1, 3 do
  local err = wrong_type(KEYS[i], 'stream')
  if err then return redis.error_reply(err) end
end
-- settled[b]: the bucket was already marked dirty in this window.
local settled = {}
for b = 1, nb do
  local mark_key = KEYS[2 + 3 * b]
  local mark = redis.pcall('GET', mark_key)  -- GET fails on a non-string: the mark's check
  if type(mark) == 'table' and mark['err'] then
    return redis.error_reply('WRONGTYPE ' .. mark_key .. ' is not a string')
  end
  settled[b] = (mark == window)
  local err = wrong_type(KEYS[1 + 3 * b], 'list')
  if not err and not settled[b] then
    err = wrong_type(KEYS[3 + 3 * b], 'zset')
  end
  if err then return redis.error_reply(err) end
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

-- Flagged events by ordinal: ARGV position of their fields and how many.
local flags = {}
local f = 11
while f < first_id do
  flags[tonumber(ARGV[f])] = f
  f = f + 2 + tonumber(ARGV[f + 1])
end

local new, dup, marked, flagged = 0, 0, 0, 0
local capped = {}
local acks = nil  -- nil while every bucket is admitted: then the ids are acked as a range
local a = first_id + n_events
local s = 4 + 3 * nb
local e = 0  -- ordinal of the current event
for b = 1, nb do
  local dur_key = KEYS[1 + 3 * b]
  local bucket_id = ARGV[a]
  local n = tonumber(ARGV[a + 2])
  local tracked = settled[b] or admit(KEYS[3 + 3 * b], ARGV[a + 1])
  if not tracked then
    capped[#capped + 1] = b
    if not acks then
      acks = {}
      for i = first_id, first_id + e - 1 do acks[#acks + 1] = ARGV[i] end
    end
    s = s + n
    e = e + n
  else
    local fresh, nfresh = {}, 0
    for i = a + 3, a + 2 + n do
      e = e + 1
      if acks then acks[#acks + 1] = ARGV[first_id + e - 1] end
      if redis.call('SET', KEYS[s], '1', 'NX', 'EX', seen_ttl) then
        nfresh = nfresh + 1
        fresh[nfresh] = ARGV[i]
        local at = flags[e]
        if at then
          redis.call('XADD', KEYS[3], 'MAXLEN', '~', anomalies_maxlen, '*',
                     unpack(ARGV, at + 2, at + 1 + tonumber(ARGV[at + 1])))
          flagged = flagged + 1
        end
      else
        dup = dup + 1
      end
      s = s + 1
    end
    if nfresh > 0 then
      new = new + nfresh
      local len = redis.call('LPUSH', dur_key, unpack(fresh))
      if len > window_size then
        redis.call('LTRIM', dur_key, 0, window_size - 1)
      end
      -- A list created just now (deleted mid-window) gets its TTL even when settled.
      if not settled[b] or len == nfresh then
        redis.call('EXPIRE', dur_key, bucket_ttl)
      end
      if not settled[b] then
        redis.call('SET', KEYS[2 + 3 * b], window, 'EX', mark_ttl)
        redis.call('XADD', KEYS[2], '*', 'bucket', bucket_id, 'window', window)
        marked = marked + 1
        settled[b] = true
      end
    end
  end
  a = a + 3 + n
end
if acks then
  if #acks > 0 then
    redis.call('XACK', KEYS[1], group, unpack(acks))
  end
elseif n_events > 0 then
  redis.call('XACK', KEYS[1], group, unpack(ARGV, first_id, first_id + n_events - 1))
end
local out = {new, dup, marked, flagged}
for _, b in ipairs(capped) do
  out[#out + 1] = b
end
return out

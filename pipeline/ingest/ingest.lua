-- Apply one batch of validated trace events atomically (pipeline/ingest/batch.py builds the call).
--
-- KEYS: 1 traces stream, 2 dirty stream, 3 anomalies stream, 4 the service index,
--       then per bucket b (1..nb): dur (sample ring), dirty mark, the service's endpoint index;
--       then one seen key per event, in bucket order.
-- ARGV: 1 group, 2 window_s, 3 seen_ttl_s, 4 bucket_ttl_s, 5 window_size,
--       6 anomalies_maxlen, 7 nb, 8 max_endpoints (0: no cap), 9 n events,
--       10 na = how many ARGV the anomaly section takes, 11 max_services (0: no cap),
--       then the anomaly section: per flagged event its ordinal (1..n, bucket order),
--       nf and nf anomaly fields;
--       then the n stream ids, in bucket order;
--       then per bucket: bucket_id, service, endpoint, n_events, n_events durations (ms,
--       each a float32 as 4 bytes, the sample ring's format: pipeline/samples.py).
-- Returns {new, duplicate, marked_dirty, anomalies_recorded, capped bucket ordinals...}: b
-- for a bucket whose endpoint is over its service's cap, -b when the service is over
-- the cap on services.
--
-- Slot mode (a Redis Cluster: group ARGV[1] is empty, both caps 0, KEYS 1-4 and each
-- bucket's third key are stand-ins in the batch's one slot, never touched): the call
-- applies the buckets of one hash slot and leaves the streams to the caller
-- (pipeline/ingest/slots.py): no XACK, no XADD. A new dirty mark is written as
-- "<window>!" (not yet published) that lives as long as the dedup keys; it returns
-- {new, duplicate, marked_dirty, anomalies_recorded, {b, window, ...} of every bucket in
-- the call whose mark is unpublished, {ordinal of each new flagged event, ...}}.
--
-- Dedup, push, trim, dirty mark and ack happen in one step: a consumer killed at any
-- instant either did all of it (the entry is acked) or none (it is redelivered and the
-- seen key, absent, lets it count once).
--
-- The service index (ZSET service -> last seen, unix s) caps how many services are
-- tracked, and each service's endpoint index how many endpoints it may have. Events of a
-- bucket over either cap are left unacked and returned, so the caller dead-letters them
-- with the reason (a crash before it does just redelivers them: nothing is silently
-- dropped).
--
-- Per-bucket bookkeeping is once per window, not once per batch: a bucket whose mark
-- already holds the current window was admitted, typed and given its TTLs by an earlier
-- call in this window, so only its sample ring's type and length are checked again.
--
-- Samples: a ring of float32 per bucket (pipeline/samples.py has the format). A batch's
-- samples are written in place (SETRANGE) into the ring's free slots, or over its oldest
-- once it is full; when they do not fit (or windowSize changed, or the header is bad, or
-- the key is a LIST from an older version) the ring is SET whole, oldest first, with a
-- quarter more slots. Never APPEND: Redis then reserves up to twice the length
-- (measured: 7.3 bytes per sample for a ring filled a sample at a time).
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
local max_services = tonumber(ARGV[11])
local first_id = 12 + na
local slot_mode = (group == '')

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

-- Ring layout (pipeline/samples.py): count, next (uint32 LE each), then float32 slots.
local MIN_SLOTS = 16

-- A sample ring's length (0: absent), -1 for a LIST an older version left, or an error.
local function ring_len(key)
  local len = redis.pcall('STRLEN', key)
  if type(len) == 'table' then
    local t = redis.call('TYPE', key)['ok']
    if t == 'list' then return -1 end
    return nil, 'WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a sample ring (string)'
  end
  if len > 0 and (len < 8 or (len - 8) % 4 ~= 0) then
    return nil, 'WRONGTYPE ' .. key .. ' holds ' .. len .. ' bytes: not a sample ring '
      .. '(DEL it to start the bucket over)'
  end
  return len
end

-- SET the ring to hold `body` (packed samples, oldest first; the newest windowSize kept)
-- with room to grow by a quarter, or exactly windowSize slots once it holds that many;
-- the TTL stays. Growing by a quarter keeps a filling ring within 1.25x its samples and
-- copies each sample a handful of times over the ring's life.
local function write_ring(key, body)
  if #body > 4 * window_size then body = body:sub(-4 * window_size) end
  local n = #body / 4
  local slots = window_size
  if n < window_size then
    slots = math.min(window_size, math.max(MIN_SLOTS, n + math.ceil(n / 4)))
  end
  redis.call('SET', key, struct.pack('<I4I4', n, n % window_size) .. body
             .. string.rep('\0', 4 * (slots - n)), 'KEEPTTL')
end

-- The samples of ring value `old`, oldest first (a bad header is clamped, never trusted).
local function oldest_first(old)
  local count, nxt = struct.unpack('<I4I4', old)
  local slots = (#old - 8) / 4
  if count > slots then count = slots end
  if count < slots then return old:sub(9, 8 + 4 * count) end
  if nxt >= slots then nxt = 0 end
  return old:sub(9 + 4 * nxt) .. old:sub(9, 8 + 4 * nxt)
end

-- A LIST of integer microseconds (newest first), as older versions stored, as a ring.
local function convert_list(key)
  local items = redis.call('LRANGE', key, 0, window_size - 1)
  local parts = {}
  for i = #items, 1, -1 do
    local us = tonumber(items[i])
    if us then parts[#parts + 1] = struct.pack('<f', us / 1000) end
  end
  local ttl = redis.call('PTTL', key)
  redis.call('DEL', key)
  write_ring(key, table.concat(parts))
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  return redis.call('STRLEN', key)
end

-- Add packed samples to the ring at `key` (current length `len`, 0 if absent): in place
-- when they fit (a full ring overwrites its oldest), else one SET of the whole ring.
local function add_samples(key, len, data)
  if len == 0 then
    write_ring(key, data)
    return
  end
  local k = #data / 4
  local slots = (len - 8) / 4
  local count, nxt = struct.unpack('<I4I4', redis.call('GETRANGE', key, 0, 7))
  if count == window_size and slots == window_size and nxt < window_size and k < window_size then
    local first = math.min(k, window_size - nxt)
    if first == k then
      redis.call('SETRANGE', key, 8 + 4 * nxt, data)
    else
      redis.call('SETRANGE', key, 8 + 4 * nxt, data:sub(1, 4 * first))
      redis.call('SETRANGE', key, 8, data:sub(4 * first + 1))
    end
    redis.call('SETRANGE', key, 4, struct.pack('<I4', (nxt + k) % window_size))
  elseif nxt == count and count + k <= slots and slots <= window_size then
    redis.call('SETRANGE', key, 8 + 4 * count, data)
    redis.call('SETRANGE', key, 0, struct.pack('<I4I4', count + k, (count + k) % window_size))
  else
    write_ring(key, oldest_first(redis.call('GET', key)) .. data)
  end
end

for i = 1, slot_mode and 0 or 3 do
  local err = wrong_type(KEYS[i], 'stream')
  if err then return redis.error_reply(err) end
end
if max_services > 0 then
  local err = wrong_type(KEYS[4], 'zset')
  if err then return redis.error_reply(err) end
end
-- settled[b]: the bucket was already marked dirty in this window; lens[b]: its ring's length.
-- Each endpoint index's type is checked once per call (its service's buckets share it).
local settled, lens, typed = {}, {}, {}
local unpublished, fresh_flags = {}, {}  -- slot mode: bucket -> window; new flagged ordinals
for b = 1, nb do
  local mark_key = KEYS[3 + 3 * b]
  local mark = redis.pcall('GET', mark_key)  -- GET fails on a non-string: the mark's check
  if type(mark) == 'table' and mark['err'] then
    return redis.error_reply('WRONGTYPE ' .. mark_key .. ' is not a string')
  end
  if slot_mode and type(mark) == 'string' and mark:sub(-1) == '!' then
    mark = mark:sub(1, -2)
    unpublished[b] = mark
  end
  settled[b] = (mark == window)
  local len, err = ring_len(KEYS[2 + 3 * b])
  lens[b] = len
  local index_key = KEYS[4 + 3 * b]
  if not err and not settled[b] and not slot_mode and not typed[index_key] then
    err = wrong_type(index_key, 'zset')
    typed[index_key] = true
  end
  if err then return redis.error_reply(err) end
end
for b = 1, nb do
  if lens[b] == -1 then lens[b] = convert_list(KEYS[2 + 3 * b]) end
end

-- May `member` join the capped index? Members idle past the bucket TTL (their samples
-- are gone) free their slot. ZADD first: it tells whether the member is new, and only a
-- new member can be over the cap (then it is taken out again). Each member's score and
-- each index's TTL are refreshed once per call, not once per bucket: a backfill's batch
-- holds hundreds of buckets of the same few services.
local admitted, ttl_set = {}, {}  -- index key -> {member -> bool}; index key -> true
local function admit_to(index_key, member, cap)
  if cap <= 0 then
    return true
  end
  local members = admitted[index_key]
  if members == nil then
    members = {}
    admitted[index_key] = members
  end
  if members[member] ~= nil then return members[member] end
  local ok = true
  if redis.call('ZADD', index_key, now_s, member) == 1
      and redis.call('ZCARD', index_key) > cap then
    redis.call('ZREMRANGEBYSCORE', index_key, '-inf', now_s - bucket_ttl)
    if redis.call('ZCARD', index_key) > cap then
      redis.call('ZREM', index_key, member)
      ok = false
    end
  end
  if not ttl_set[index_key] then
    ttl_set[index_key] = true
    redis.call('EXPIRE', index_key, bucket_ttl)
  end
  members[member] = ok
  return ok
end

-- 0 when the bucket may be tracked, else why not: 1 endpoint cap, 2 service cap.
local function admit(index_key, service, endpoint)
  if not admit_to(KEYS[4], service, max_services) then return 2 end
  if not admit_to(index_key, endpoint, max_endpoints) then return 1 end
  return 0
end

-- Flagged events by ordinal: ARGV position of their fields and how many.
local flags = {}
local f = 12
while f < first_id do
  flags[tonumber(ARGV[f])] = f
  f = f + 2 + tonumber(ARGV[f + 1])
end

local new, dup, marked, flagged = 0, 0, 0, 0
local capped = {}
local acks = nil  -- nil while every bucket is admitted: then the ids are acked as a range
local a = first_id + n_events
local s = 5 + 3 * nb
local e = 0  -- ordinal of the current event
for b = 1, nb do
  local dur_key = KEYS[2 + 3 * b]
  local bucket_id = ARGV[a]
  local n = tonumber(ARGV[a + 3])
  local refused = settled[b] and 0 or admit(KEYS[4 + 3 * b], ARGV[a + 1], ARGV[a + 2])
  if refused ~= 0 then
    capped[#capped + 1] = refused == 2 and -b or b
    if not acks then
      acks = {}
      for i = first_id, first_id + e - 1 do acks[#acks + 1] = ARGV[i] end
    end
    s = s + n
    e = e + n
  else
    local fresh, nfresh = {}, 0
    for i = a + 4, a + 3 + n do
      e = e + 1
      if acks then acks[#acks + 1] = ARGV[first_id + e - 1] end
      if redis.call('SET', KEYS[s], '1', 'NX', 'EX', seen_ttl) then
        nfresh = nfresh + 1
        fresh[nfresh] = ARGV[i]
        local at = flags[e]
        if at and slot_mode then
          fresh_flags[#fresh_flags + 1] = e
          flagged = flagged + 1
        elseif at then
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
      add_samples(dur_key, lens[b], table.concat(fresh))
      -- A ring created just now (deleted mid-window) gets its TTL even when settled.
      if not settled[b] or lens[b] == 0 then
        redis.call('EXPIRE', dur_key, bucket_ttl)
      end
      if not settled[b] and slot_mode then
        redis.call('SET', KEYS[3 + 3 * b], window .. '!', 'EX', math.max(tonumber(seen_ttl), mark_ttl))
        unpublished[b] = window
        marked = marked + 1
        settled[b] = true
      elseif not settled[b] then
        redis.call('SET', KEYS[3 + 3 * b], window, 'EX', mark_ttl)
        redis.call('XADD', KEYS[2], '*', 'bucket', bucket_id, 'window', window)
        marked = marked + 1
        settled[b] = true
      end
    end
  end
  a = a + 4 + n
end
if slot_mode then
  local pubs = {}
  for b = 1, nb do
    if unpublished[b] then pubs[#pubs + 1] = b; pubs[#pubs + 1] = unpublished[b] end
  end
  return {new, dup, marked, flagged, pubs, fresh_flags}
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

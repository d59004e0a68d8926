-- Slot mode (a Redis Cluster): admit members to one capped index, the service index or a
-- service's endpoint index, which live in slots of their own (pipeline/ingest/slots.py).
-- The same rule as ingest.lua's admit_to: a member already in the index, or one that
-- fits under the cap once members idle past the bucket TTL are dropped, is admitted and
-- its last-seen time refreshed.
-- KEYS: 1 the index (ZSET member -> last seen, unix s). ARGV: 1 cap (> 0), 2 bucket TTL (s),
-- then the members. Returns the 1-based positions of the members refused.
local cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'zset' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a zset')
end
local now_s = tonumber(redis.call('TIME')[1])
local refused, pruned = {}, false
for i = 3, #ARGV do
  local member = ARGV[i]
  local ok = true
  if not redis.call('ZSCORE', KEYS[1], member) and redis.call('ZCARD', KEYS[1]) >= cap then
    if not pruned then
      redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_s - ttl)
      pruned = true
    end
    ok = redis.call('ZCARD', KEYS[1]) < cap
  end
  if ok then
    redis.call('ZADD', KEYS[1], now_s, member)
  else
    refused[#refused + 1] = i - 2
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
return refused

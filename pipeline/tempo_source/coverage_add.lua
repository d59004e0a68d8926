-- Add [ARGV[1], ARGV[2]] to the interval set KEYS[1] (a ZSET of "start-end" members
-- scored by start), merging what it overlaps or touches. Returns the interval count.
local s, e = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', e)) do
  local ms, me = string.match(m, '^(%d+)-(%d+)$')
  ms, me = tonumber(ms), tonumber(me)
  if me and me >= s then
    if ms < s then s = ms end
    if me > e then e = me end
    redis.call('ZREM', KEYS[1], m)
  end
end
redis.call('ZADD', KEYS[1], s, s .. '-' .. e)
return redis.call('ZCARD', KEYS[1])

-- Move the watermark KEYS[1] forward to ARGV[1]; never back. 1 if it moved.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0

-- Renew the lease KEYS[1] for ARGV[2] ms if ARGV[1] (the caller) still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

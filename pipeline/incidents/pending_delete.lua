-- An endpoint's pending record (pipeline/incidents/judge.lua) was published: delete it,
-- unless it is another record by now. KEYS: 1 the record. ARGV: 1 the record published.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

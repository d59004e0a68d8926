"""tempo-latency-anomaly: the stream pipeline's shared core (events, buckets, keys, stats, rule, stages)."""

"""Writing shards: deterministic assignment, resumable jobs, workers, per-shard records (spec 9)."""

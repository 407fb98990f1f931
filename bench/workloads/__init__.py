"""What a benchmark client does, one module per workload; each returns plain metric dicts."""

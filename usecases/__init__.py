"""Use cases: domain values in, domain values out; no grpc, no protos."""

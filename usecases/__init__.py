"""Use cases: domain values in, domain values out; never grpc or protos.

One module (or package) per capability.
"""

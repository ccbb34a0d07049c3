"""One typed client per external system: the hospital's signing server (HSM), the
provincial fiscal platform, and mail. Channels, deadlines, retries and the mapping
of transport errors to engine.errors live here, once (clients._grpc).

Layer 5: imports engine, config and protos; nothing above it imports protos for
these systems.
"""

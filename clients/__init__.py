"""One typed client per external system: the hospital's signing server (HSM), the
provincial fiscal platform (clients/fiscal.py, its catalogue calls in
fiscal_catalog.py) and its CA, mail, SMS, WeChat and Alipay. The engine process
opens one of each (ebill/wiring.py). Channels, deadlines, retries and the mapping
of transport errors to engine.errors live here, once (clients._grpc).

Layer 5: imports engine, config and protos; nothing above it imports protos for
these systems.
"""

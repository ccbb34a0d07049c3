"""The engine's HTTP server: one ASGI app (app.py) served beside gRPC (serve.py);
the vendor-compatible gateway (gateway/), the REST mapping (rest.py), and the
routes other areas mount (app.MOUNTS)."""

__all__: list[str] = []

"""The vendor-compatible HTTP gateway (the dominant medical e-bill platform's
JSON-over-HTTP interface): envelope, methods, and the route that serves them.
See docs/gateway.md."""

from ebill.http.gateway.routes import routes

__all__ = ["routes"]

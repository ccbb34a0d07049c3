"""Field paths of errors: where in a request a refused value sits."""

from __future__ import annotations

from engine.errors import EbillError

__all__ = ["prefixed"]


def prefixed(err: EbillError, prefix: str) -> EbillError:
    """``err`` with its field placed under ``prefix`` (a nested message or list item):
    a bill's own check names ``bus_no``; the caller sent it as ``bills[3].bus_no``."""
    if not err.field:
        return err
    field = f"{prefix}.{err.field}"
    message = err.message
    if message.startswith(err.field + ":"):
        message = f"{prefix}.{message}"
    return type(err)(
        message,
        field=field,
        retry_after_s=err.retry_after_s,
        violations=tuple(v.prefixed(prefix) for v in err.violations),
    )

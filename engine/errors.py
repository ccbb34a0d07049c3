"""One error tree for the whole engine.

Every failure the engine reports is an :class:`EbillError` carrying a status code
name. The gRPC edge maps ``code`` to ``grpc.StatusCode[code]``; the core never
imports grpc. Field-level problems carry the field path of the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "EbillError",
    "FailedPrecondition",
    "FieldError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid value: where it is and what is wrong with it."""

    field: str
    message: str

    def prefixed(self, prefix: str) -> FieldError:
        return FieldError(f"{prefix}.{self.field}" if prefix else self.field, self.message)


class EbillError(Exception):
    """Base of every error the engine reports to a caller."""

    code: str = "INTERNAL"

    # How long a caller should wait before retrying (google.rpc.RetryInfo at the
    # edge); None: retrying the same request will not help. The classes whose
    # failures pass with time set a default; an instance may say better.
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        retry_after_s: float | None = None,
        violations: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s
        # Every invalid value of the request (google.rpc.BadRequest at the edge);
        # ``field``/``message`` name the first. Empty: only ``field``, if any.
        self.violations = violations

    @property
    def field_errors(self) -> tuple[FieldError, ...]:
        """Every field violation: the collected ones, else the one ``field`` names."""
        if self.violations:
            return self.violations
        if self.field:
            text = self.message
            if text.startswith(self.field + ": "):
                text = text[len(self.field) + 2 :]
            return (FieldError(self.field, text),)
        return ()

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (Ray); keep the keyword-only fields.
        return (
            _rebuild,
            (type(self), self.message, self.field, self.retry_after_s, self.violations),
        )


def _rebuild(
    cls: type[EbillError],
    message: str,
    field: str,
    retry_after_s: float | None = None,
    violations: tuple[FieldError, ...] = (),
) -> EbillError:
    return cls(message, field=field, retry_after_s=retry_after_s, violations=violations)


class InvalidArgument(EbillError):
    """The request is malformed or inconsistent; nothing was written."""

    code = "INVALID_ARGUMENT"

    @classmethod
    def from_errors(cls, errors: list[FieldError]) -> InvalidArgument:
        """The first error as message and field (as before), every one as violations."""
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return cls(
            f"{first.field}: {first.message}{more}", field=first.field, violations=tuple(errors)
        )


class NotFound(EbillError):
    code = "NOT_FOUND"


class Unauthenticated(EbillError):
    """No credentials, or credentials that do not prove who the caller is (a
    bad signature, a replayed nonce, a stale timestamp, an ended session)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(EbillError):
    """The caller is known but may not do this: a permission its roles lack, a
    method its app is not allowed, or a unit or issuing point outside its scope."""

    code = "PERMISSION_DENIED"


class AlreadyExists(EbillError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(EbillError):
    """The request is valid but the current state forbids it."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(EbillError):
    """No bill numbers left in stock for the issuing point, or the engine's queue
    is full (then with a short ``retry_after_s``)."""

    code = "RESOURCE_EXHAUSTED"
    # Stock is topped up by automatic distribution every few seconds.
    retry_after_s: float | None = 2.0


class Unavailable(EbillError):
    """A dependency (database, signer, fiscal platform) cannot be reached."""

    code = "UNAVAILABLE"
    # A dependency back after a blip: the clients' own reconnect backoff is ~1 s.
    retry_after_s: float | None = 1.0


class DeadlineExceeded(EbillError):
    """The answer did not come in time; the work may still complete (retry with
    the same bus_no to get the bill)."""

    code = "DEADLINE_EXCEEDED"
    # The work may finish meanwhile; the retry (same bus_no) then replays it.
    retry_after_s: float | None = 1.0


class Internal(EbillError):
    code = "INTERNAL"


class DataLoss(EbillError):
    """Stored data failed its integrity check (a sealed value altered, moved to
    another row, or sealed under a key the ring no longer holds)."""

    code = "DATA_LOSS"

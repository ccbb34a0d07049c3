"""The vendor's result codes as this gateway answers them.

The specification fixes only ``S0000`` (success) and says every other value is
a failure (its appendix 9: "EXXXX"); its examples use E0001 and E0002. HIS
systems test ``result == "S0000"`` and show ``message``. The codes below keep
that shape and tell an integrator what went wrong without reading the text:
E1xxx the envelope, E2xxx the business request, E3xxx "try again later".
docs/gateway.md has the table.
"""

from __future__ import annotations

from enum import StrEnum

from engine.errors import EbillError

__all__ = ["GatewayError", "Result", "result_for", "result_of"]


class Result(StrEnum):
    OK = "S0000"
    # The specification's own generic failure codes.
    FAILED = "E0001"
    # Envelope: nothing was read past the failing step, nothing written.
    MALFORMED = "E1001"  # not JSON, a field missing, data not base64/UTF-8/JSON
    UNKNOWN_APP = "E1002"  # appid not registered, or disabled
    BAD_SIGN = "E1003"  # sign does not match appid/data/noise/key/version
    REPLAYED = "E1004"  # noise seen before within the window
    UNKNOWN_METHOD = "E1005"  # no such interface
    NOT_ALLOWED = "E1006"  # the app may not call this interface
    # Business: the request was read and refused; nothing written.
    INVALID = "E2001"  # a field is missing or wrong (the message names it)
    NOT_FOUND = "E2002"  # no such bill, batch, stock
    CONFLICT = "E2003"  # the bill's state forbids it, or the serial is taken
    OUT_OF_SCOPE = "E2004"  # an issuing point or bill outside the app's scope
    NOT_SERVED = "E2005"  # an interface this engine does not serve (yet)
    # Transient: the same request (same busNo) may be sent again.
    BUSY = "E3001"  # queue full or stock exhausted: retry after a moment
    UNAVAILABLE = "E3002"  # a dependency is away
    TIMEOUT = "E3003"  # no answer in time: resend the same busNo to get the bill


class GatewayError(Exception):
    """A refusal the gateway words itself (envelope, scope, unserved method)."""

    def __init__(self, result: Result, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


_BY_CODE: dict[str, Result] = {
    "INVALID_ARGUMENT": Result.INVALID,
    "NOT_FOUND": Result.NOT_FOUND,
    "ALREADY_EXISTS": Result.CONFLICT,
    "FAILED_PRECONDITION": Result.CONFLICT,
    "PERMISSION_DENIED": Result.OUT_OF_SCOPE,
    "UNAUTHENTICATED": Result.UNKNOWN_APP,
    "RESOURCE_EXHAUSTED": Result.BUSY,
    "UNAVAILABLE": Result.UNAVAILABLE,
    "DEADLINE_EXCEEDED": Result.TIMEOUT,
}


def result_for(code: str) -> Result:
    """The vendor result code of an engine error code name (INVALID_ARGUMENT...)."""
    return _BY_CODE.get(code, Result.FAILED)


def result_of(exc: EbillError) -> Result:
    return result_for(exc.code)

"""Every status a stored thing can be in, as StrEnums.

The values are the words the database's CHECK constraints allow
(storage/migrations), so a member compares equal to the text asyncpg returns
and can be passed to SQL as is. BillStatus lives with the bill (engine.model).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ApplicationStatus",
    "DecisionStatus",
    "GrantSource",
    "Medium",
    "OpeningStatus",
    "PaperStatus",
    "ReturnStatus",
    "SegmentStatus",
    "SubmissionOutcome",
    "WriteOffStatus",
]


class PaperStatus(StrEnum):
    """Where a bill stands with paper: never printed, printed, or its paper voided."""

    NONE = "none"
    PRINTED = "printed"
    VOIDED = "voided"


class SegmentStatus(StrEnum):
    """A segment of numbers at the bill office or an issuing point."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    RETURNING = "returning"
    RETURNED = "returned"
    VOIDED = "voided"


class GrantSource(StrEnum):
    """How numbers came to the unit (segment_grants.source)."""

    GRANT = "grant"
    APPLICATION = "application"
    OPENING = "opening"


class ApplicationStatus(StrEnum):
    """A grant application (赋码申请)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    GRANTED = "granted"
    REJECTED = "rejected"
    ENABLED = "enabled"


class OpeningStatus(StrEnum):
    """Opening stock (期初库存) waits for a second person's confirmation."""

    DRAFT = "draft"
    CONFIRMED = "confirmed"


class DecisionStatus(StrEnum):
    """Requisitions and destruction requests: asked, then decided by someone else."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ReturnStatus(StrEnum):
    """Numbers sent one level up, held until the level above confirms."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class Medium(StrEnum):
    """What a write-off declares: e-bills by bill code, or paper by paper code."""

    EBILL = "ebill"
    PAPER = "paper"


class WriteOffStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class SubmissionOutcome(StrEnum):
    """What one submission of a write-off came back with."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ERROR = "error"

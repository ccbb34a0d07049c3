"""Low-stock warnings (库存预警): rules, the warnings read in the system, and
emailing the ones not yet emailed."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

import asyncpg

from clients.mail import Mailer, MailError
from ops import metrics
from storage.stock import alerts as store
from storage.stock.records import Alert

__all__ = ["ENGINE_ID", "claim_lease", "list_alerts", "mail_alerts", "set_alert_rule"]

log = logging.getLogger(__name__)

set_alert_rule = store.set_alert_rule


async def list_alerts(
    pool: asyncpg.Pool, unit_code: str, place_code: str, *, mark_read: bool
) -> list[Alert]:
    """The bill office reads every point's warnings, a point its own."""
    return await store.list_alerts(pool, unit_code, place_code, mark_read=mark_read)


# Who claims a warning: this engine process. Only for the record (and the logs):
# claims are judged by their lease, never by asking whether the owner is alive.
ENGINE_ID = f"{socket.gethostname()}:{os.getpid()}"

# smtplib's timeout applies to each network step (connect, EHLO, MAIL, RCPT,
# DATA, QUIT): a send that is still going on cannot take longer than this.
_SMTP_STEPS = 6


def claim_lease(mailer: Mailer) -> timedelta:
    """How long a claim on a warning holds: longer than the slowest send that can
    still succeed, so a live engine is never overtaken, plus a margin."""
    return timedelta(seconds=_SMTP_STEPS * mailer.timeout_s + 5)


async def mail_alerts(pool: asyncpg.Pool, mailer: Mailer, owner: str = ENGINE_ID) -> int:
    """Email the warnings not yet emailed; returns how many were sent.

    Several engines share one database: each warning is claimed (one row, SKIP
    LOCKED, with a lease) before it is sent and marked emailed right after, so two
    engines never mail the same warning side by side.

    At-least-once is the honest guarantee: SMTP has no idempotency key and the
    mark cannot commit in the same transaction as the server's "250 OK", so an
    engine killed between the two leaves a warning that was mailed but looks
    unsent; its claim lapses and another engine mails it again. The window is kept
    to one warning per engine and a few milliseconds: a claim covers one warning,
    taken just before its send, and the mark follows the send at once. Nothing is
    lost: a claim whose engine died lapses after the lease and the warning is
    claimed again.
    """
    if not mailer.enabled:
        return 0
    lease = claim_lease(mailer)
    sent = 0
    for _ in range(_PER_PASS):
        claimed = await store.claim_alert_email(pool, owner, lease)
        if claimed is None:
            break
        a, reclaimed = claimed
        if reclaimed:
            # Its earlier claimant died or failed mid-send: it may have gone out.
            metrics.STOCK_ALERTS_MAILED.labels("reclaimed").inc()
            log.warning("stock warning %s: an earlier claim lapsed; sending it again", a.id)
        subject = f"库存预警 low stock #{a.id}: {a.bill_code} at issuing point {a.place_code}"
        try:
            await mailer.send(a.email, subject, a.message)
        except MailError as exc:
            log.warning("cannot email stock warning %s: %s", a.id, exc)
            await store.mark_alert_emailed(pool, a.id, error=str(exc) or "error")
            metrics.STOCK_ALERTS_MAILED.labels("failed").inc()
            continue
        await store.mark_alert_emailed(pool, a.id)
        metrics.STOCK_ALERTS_MAILED.labels("sent").inc()
        sent += 1
    return sent


# At most this many warnings per pass, so that automatic distribution (the other
# half of the stock loop) is not held up by a flood of warnings.
_PER_PASS = 50

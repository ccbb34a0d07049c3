"""Low-stock warnings (库存预警): rules, the warnings read in the system, and
emailing the ones not yet emailed."""

from __future__ import annotations

import logging

import asyncpg

from clients.mail import Mailer, MailError
from storage.stock import alerts as store
from storage.stock.records import Alert

__all__ = ["list_alerts", "mail_alerts", "set_alert_rule"]

log = logging.getLogger(__name__)

set_alert_rule = store.set_alert_rule


async def list_alerts(
    pool: asyncpg.Pool, unit_code: str, place_code: str, *, mark_read: bool
) -> list[Alert]:
    """The bill office reads every point's warnings, a point its own."""
    return await store.list_alerts(pool, unit_code, place_code, mark_read=mark_read)


async def mail_alerts(pool: asyncpg.Pool, mailer: Mailer) -> int:
    """Email the warnings not yet emailed; returns how many were sent."""
    if not mailer.enabled:
        return 0
    sent = 0
    for a in await store.due_alert_emails(pool):
        subject = f"库存预警 low stock: {a.bill_code} at issuing point {a.place_code}"
        try:
            await mailer.send(a.email, subject, a.message)
        except MailError as exc:
            log.warning("cannot email stock warning %s: %s", a.id, exc)
            await store.mark_alert_emailed(pool, a.id, error=str(exc) or "error")
            continue
        await store.mark_alert_emailed(pool, a.id)
        sent += 1
    return sent

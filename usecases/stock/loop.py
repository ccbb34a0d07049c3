"""The stock loop beside issuance: automatic distribution, then warning emails."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from clients.mail import Mailer
from storage.stock import movements
from usecases.stock.alerts import mail_alerts

__all__ = ["stock_loop"]

log = logging.getLogger(__name__)


async def stock_loop(pool: asyncpg.Pool, mailer: Mailer, interval_s: float) -> None:
    """Automatic distribution and warning emails, beside issuance, every
    ``interval_s``; ``mailer`` is the engine's one (the relay bills by e-mail use)."""
    while True:
        try:
            for d in await movements.auto_distribute(pool):
                log.info(
                    "auto-distributed %d numbers of %s to %s/%s",
                    d.count, d.bill_code, d.unit_code, d.place_code,
                )  # fmt: skip
            await mail_alerts(pool, mailer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stock loop failed")
        await asyncio.sleep(interval_s)

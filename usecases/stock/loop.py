"""The stock loop beside issuance: automatic distribution, then warning emails."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from clients.mail import Mailer
from config.settings import Settings
from storage.stock import movements
from usecases.stock.alerts import mail_alerts

__all__ = ["stock_loop"]

log = logging.getLogger(__name__)


async def stock_loop(pool: asyncpg.Pool, settings: Settings) -> None:
    """Automatic distribution and warning emails, beside issuance."""
    mailer = Mailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        settings.smtp_timeout_s,
        # The same relay as bills by e-mail (EBILL_SMTP_STARTTLS, _USER, _PASSWORD).
        starttls=settings.smtp_starttls,
        ca_file=settings.delivery_ca_file,
        username=settings.smtp_user,
        password=settings.smtp_password,
    )
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
        await asyncio.sleep(settings.stock_interval_s)

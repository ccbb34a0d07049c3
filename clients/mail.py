"""Mail (SMTP): the low-stock warnings to stock keepers.

smtplib is blocking; each message is sent in a worker thread so the event loop
keeps serving. No retries here: the caller records a failed send and decides.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from config import tuning

__all__ = ["MailError", "Mailer"]

# What a failed send raises: connection problems and SMTP refusals.
MailError = (OSError, smtplib.SMTPException)


class Mailer:
    """Sends plain-text mail through ``host:port`` from ``sender``; with an empty
    host mail is off (``enabled`` is False) and :meth:`send` must not be called."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        sender: str = "ebill@localhost",
        timeout_s: float = tuning.SMTP_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def _send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.send_message(msg)

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one message; raises OSError or smtplib.SMTPException (``MailError``)."""
        if not self.enabled:
            raise RuntimeError("mail is off (no SMTP host)")
        await asyncio.to_thread(self._send, to, subject, body)

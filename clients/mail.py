"""Mail (SMTP): the low-stock warnings to stock keepers, and bills to payers.

smtplib is blocking; each message is sent in a worker thread so the event loop
keeps serving. No retries here: the caller records a failed send and decides.
A relay that wants it gets STARTTLS (``starttls``, verified against ``ca_file``
or the system's CAs) or implicit TLS (``implicit_tls``, port 465) and a login.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

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
        *,
        starttls: bool = False,
        implicit_tls: bool = False,
        ca_file: str = "",
        username: str = "",
        password: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.ca_file = ca_file
        self.username = username
        self.password = password

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)

    def _send(self, to: str, subject: str, body: str) -> str:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(body)
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=self._tls_context()
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.starttls and not self.implicit_tls:
                smtp.starttls(context=self._tls_context())
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(msg)
        return str(msg["Message-ID"])

    async def send(self, to: str, subject: str, body: str) -> str:
        """Send one message; returns its Message-ID. Raises OSError or
        smtplib.SMTPException (``MailError``)."""
        if not self.enabled:
            raise RuntimeError("mail is off (no SMTP host)")
        return await asyncio.to_thread(self._send, to, subject, body)

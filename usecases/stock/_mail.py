"""Sending one email over SMTP, until clients.mail (Mailer) exists.

A stop-gap adapter like _fiscal: blocking smtplib, run in a thread by the caller.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

__all__ = ["MailError", "SmtpMailer"]

# What a failed send raises: the caller records it and tries again later.
MailError = (OSError, smtplib.SMTPException)


class SmtpMailer:
    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host = host
        self.port = port
        self.sender = sender

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(msg)

"""The engine process's clients of the external systems, one each, opened here
from the settings and closed once at shutdown (ebill/server.py).

The gRPC servicers, the HTTP routes and the background loops all receive these
same objects: one channel to the signing server, one to the fiscal platform (its
catalogue calls included) and one to its CA, one connection pool per message
provider (SMS, WeChat, Alipay) and one mailer. The pipeline's Ray actors live in
other processes and open their own (actors/stages.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from clients.alipay import AlipayClient, load_private, load_public
from clients.ca import CaClient
from clients.fiscal import FiscalClient
from clients.mail import Mailer
from clients.signer import SignerClient
from clients.sms import SmsClient
from clients.wechat import WechatClient
from config.settings import Settings
from usecases.delivery import Channels

__all__ = ["Clients", "open_clients"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Clients:
    """One client per external system; a message provider without a URL is None
    (that channel is off), a mailer without a host is off (``enabled``)."""

    # The hospital's signing server: the unit key (transparency-log heads, archive
    # manifests, rendering) and, per call, the units' certificate keys.
    signer: SignerClient
    # The fiscal platform: stock, verification, its key, catalogue, certificates.
    fiscal: FiscalClient
    # The certificate authority units get their signing certificates from.
    ca: CaClient
    # Low-stock warnings and bills by e-mail: the same relay.
    mail: Mailer
    sms: SmsClient | None
    wechat: WechatClient | None
    alipay: AlipayClient | None

    def channels(self) -> Channels:
        """The delivery channels: these same clients."""
        return Channels(
            sms=self.sms,
            mail=self.mail if self.mail.enabled else None,
            wechat=self.wechat,
            alipay=self.alipay,
        )

    async def close(self) -> None:
        """Close every client, each once, whatever the others do."""
        closing = (self.signer, self.fiscal, self.ca, self.sms, self.wechat, self.alipay)
        results = await asyncio.gather(
            *(c.close() for c in closing if c is not None), return_exceptions=True
        )
        for failed in (r for r in results if isinstance(r, BaseException)):
            log.warning("closing a client failed: %r", failed)


def open_clients(settings: Settings) -> Clients:
    """The clients the settings configure. Nothing connects yet: gRPC channels open
    on first use, in the loop that uses them (clients._grpc.GrpcClient)."""
    s = settings
    signer_tls = s.hop_tls(s.signer_tls_dir)
    fiscal_tls = s.hop_tls(s.fiscal_tls_dir)
    ca = s.delivery_ca_file
    return Clients(
        signer=SignerClient(s.signer_addr, s.signer_key_id, tls=signer_tls),
        fiscal=FiscalClient(s.fiscal_addr, tls=fiscal_tls),
        ca=CaClient(s.fiscal_addr, tls=fiscal_tls),
        # EBILL_SMTP_*: STARTTLS, user and password for warnings and bills alike.
        mail=Mailer(s.smtp_host, s.smtp_port, s.smtp_from, s.smtp_timeout_s,
                    starttls=s.smtp_starttls, ca_file=ca, username=s.smtp_user,
                    password=s.smtp_password),
        sms=SmsClient(s.sms_url, s.sms_access_key_id, s.sms_access_key_secret,
                      s.sms_sign_name, ca_file=ca) if s.sms_url else None,
        wechat=WechatClient(s.wechat_url, s.wechat_app_id, s.wechat_app_secret,
                            ca_file=ca) if s.wechat_url else None,
        alipay=AlipayClient(s.alipay_url, s.alipay_app_id, load_private(s.alipay_app_key_file),
                            load_public(s.alipay_public_key_file),
                            ca_file=ca) if s.alipay_url else None,
    )  # fmt: skip

"""The certificate authority the units get their signing certificates from (a
service of the fiscal platform's side, fiscal.v1 CertificateAuthority)."""

from __future__ import annotations

from datetime import datetime

from clients._grpc import GrpcClient, call
from config import tuning
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["CaClient"]


class CaClient(GrpcClient[fiscal_pb2_grpc.CertificateAuthorityStub]):
    """The certificate authority units get their signing certificates from."""

    stub_class = fiscal_pb2_grpc.CertificateAuthorityStub
    default_timeout_s = tuning.FISCAL_ADMIN_TIMEOUT_S

    async def issue(
        self,
        *,
        unit_code: str,
        unit_name: str,
        public_key: bytes,
        proof: bytes,
        valid_days: int,
        not_before: datetime | None = None,
    ) -> bytes:
        """A certificate (DER) for ``public_key``; ``proof`` is the key's signature
        over engine.x509.pop_message."""
        resp = await call(
            self.stub().IssueCertificate,
            fiscal_pb2.IssueCertificateRequest(
                unit_code=unit_code,
                unit_name=unit_name,
                public_key=public_key,
                valid_days=valid_days,
                proof=proof,
                not_before=not_before.isoformat() if not_before else "",
            ),
            what="CA IssueCertificate",
            timeout_s=self.timeout_s,
            idempotent=False,
            retry=self._retry,
        )
        return bytes(resp.certificate)

    async def root(self) -> bytes:
        resp = await call(
            self.stub().GetCaCertificate,
            fiscal_pb2.GetCaCertificateRequest(),
            what="CA GetCaCertificate",
            timeout_s=self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return bytes(resp.certificate)

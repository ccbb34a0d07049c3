"""The hospital's signing server (签名验签服务器, an HSM): sign, verify, public key.

Idempotency: all three RPCs change nothing at the server (a second SignBatch
returns other, equally valid, SM2 signatures), so all are retried on UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clients._grpc import DEFAULT_RETRY, GrpcClient, RetryPolicy, call
from config import tuning
from config.tls import TlsFiles
from engine.errors import Internal
from engine.sm2 import VerifyingKey
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc

__all__ = ["SignerClient", "VerifyItem"]


@dataclass(frozen=True, slots=True)
class VerifyItem:
    """One signature to check; ``public_key`` empty means the server's own key."""

    data: bytes
    signature: bytes
    public_key: bytes = b""


class SignerClient(GrpcClient[signer_pb2_grpc.SignerStub]):
    """The signing server at ``addr``: signs with its key ``key_id`` unless a call
    names another (a unit's certificate key), so one client serves every key."""

    stub_class = signer_pb2_grpc.SignerStub
    default_timeout_s = tuning.SIGNER_TIMEOUT_S

    def __init__(
        self,
        addr: str,
        key_id: str,
        timeout_s: float | None = None,
        *,
        tls: TlsFiles | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(addr, timeout_s, tls=tls, retry=retry)
        self.key_id = key_id
        self._public_key: VerifyingKey | None = None

    async def sign_batch(
        self, messages: Sequence[bytes], timeout_s: float | None = None, *, key_id: str = ""
    ) -> list[bytes]:
        """SM2 signatures (DER) of ``messages``, in the same order, with ``key_id``
        (a unit's active certificate key) or the client's key."""
        resp = await call(
            self.stub().SignBatch,
            signer_pb2.SignBatchRequest(key_id=key_id or self.key_id, data=list(messages)),
            what="signing server SignBatch",
            timeout_s=timeout_s or self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        if len(resp.signatures) != len(messages):
            raise Internal(
                f"signing server returned {len(resp.signatures)} signatures for "
                f"{len(messages)} messages"
            )
        return [bytes(s) for s in resp.signatures]

    async def verify_batch(
        self, items: Sequence[VerifyItem], timeout_s: float | None = None
    ) -> list[bool]:
        """Whether each signature holds, in the same order."""
        resp = await call(
            self.stub().VerifyBatch,
            signer_pb2.VerifyBatchRequest(
                key_id=self.key_id,
                items=[
                    signer_pb2.VerifyItem(
                        data=i.data, signature=i.signature, public_key=i.public_key
                    )
                    for i in items
                ],
            ),
            what="signing server VerifyBatch",
            timeout_s=timeout_s or self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return [bool(v) for v in resp.valid]

    async def public_key(self, key_id: str = "") -> VerifyingKey:
        """The public half of ``key_id`` (a unit's certificate key) or of the
        client's key. The client's own is fetched once (it does not change under a
        running engine: a new key is a new key_id); another key each time asked
        (certificate issuance and import, a few calls a year)."""
        own = key_id in ("", self.key_id)
        if own and self._public_key is not None:
            return self._public_key
        resp = await call(
            self.stub().ExportPublicKey,
            signer_pb2.ExportPublicKeyRequest(key_id=key_id or self.key_id),
            what="signing server ExportPublicKey",
            timeout_s=max(self.timeout_s, tuning.KEY_FETCH_TIMEOUT_S),
            idempotent=True,
            retry=self._retry,
        )
        key = VerifyingKey(resp.public_key)
        if own:
            self._public_key = key
        return key

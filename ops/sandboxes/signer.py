"""Signing server sandbox: a stand-in for the hospital's network HSM (签名验签服务器).

A separate process speaking hsm.v1.Signer over gRPC. It holds SM2 keys in
``<data-dir>/signer/<key_id>.pem``, made on first use, and never lets them out:
callers get signatures and the public key only. A production HSM is swapped in by
pointing EBILL_SIGNER_ADDR at an adapter that speaks the same protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

import grpc

from engine.sm2 import SigningKey, VerifyingKey
from ops.sandboxes.common import new_server, sandbox_tls, serve_forever
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc

__all__ = ["KeyStore", "SignerService", "main"]

MAX_BATCH = 10_000


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._keys: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> SigningKey:
        if not key_id.replace("-", "").replace("_", "").isalnum():
            raise KeyError(key_id)
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                path = self._dir / f"{key_id}.pem"
                if path.exists():
                    key = SigningKey.from_pem(path.read_bytes())
                else:
                    key = SigningKey.generate()
                    tmp = path.with_suffix(".tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(key.to_pem())
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                self._keys[key_id] = key
            return key


class SignerService(signer_pb2_grpc.SignerServicer):
    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def _key(self, key_id: str, context: grpc.ServicerContext) -> SigningKey:
        try:
            return self._keys.get(key_id or "default")
        except KeyError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad key_id {key_id!r}")
            raise

    def SignBatch(
        self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignBatchResponse:
        if len(request.data) > MAX_BATCH:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} items")
        key = self._key(request.key_id, context)
        return signer_pb2.SignBatchResponse(signatures=[key.sign(d) for d in request.data])

    def VerifyBatch(
        self, request: signer_pb2.VerifyBatchRequest, context: grpc.ServicerContext
    ) -> signer_pb2.VerifyBatchResponse:
        own = self._key(request.key_id, context).public
        out = []
        for item in request.items:
            try:
                pub = VerifyingKey(item.public_key) if item.public_key else own
            except ValueError:
                out.append(False)
                continue
            out.append(pub.verify(item.data, item.signature))
        return signer_pb2.VerifyBatchResponse(valid=out)

    def ExportPublicKey(
        self, request: signer_pb2.ExportPublicKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.ExportPublicKeyResponse:
        key = self._key(request.key_id, context)
        return signer_pb2.ExportPublicKeyResponse(
            key_id=request.key_id or "default",
            public_key=key.public.point,
            algorithm="SM2-SM3",
            signer_id="1234567812345678",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default=os.environ.get("EBILL_SIGNER_ADDR", "127.0.0.1:50061"))
    parser.add_argument("--data-dir", default=os.environ.get("EBILL_DATA_DIR", "var"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s signer %(message)s")
    server = new_server()
    signer_pb2_grpc.add_SignerServicer_to_server(
        SignerService(KeyStore(Path(args.data_dir) / "signer")), server
    )
    serve_forever(server, args.addr, "signer", sandbox_tls("signer", Path(args.data_dir)))


if __name__ == "__main__":
    main()

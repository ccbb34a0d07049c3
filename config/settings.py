"""Every setting of the engine, read from EBILL_* environment variables.

One frozen value built once per process (:func:`load`); CLI flags default from it.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, fields
from pathlib import Path

from config.tls import TlsFiles
from config.tuning import SMTP_TIMEOUT_S

__all__ = ["Settings", "load", "read_public_key"]


def _str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


def _optional_path(name: str) -> Path | None:
    raw = os.environ.get(name)
    return Path(raw).resolve() if raw else None


@dataclass(frozen=True)
class Settings:
    """Settings of one engine process. See README.md for the table."""

    data_dir: Path
    # Empty: start a private PostgreSQL under data_dir (the embedded default).
    database_url: str
    db_pool_size: int
    grpc_addr: str
    metrics_port: int
    signer_addr: str
    signer_key_id: str
    fiscal_addr: str
    # Sandboxes only: simulated fiscal latency and failure rate.
    fiscal_latency_ms: int
    fiscal_failure_rate: float
    # Micro-batching: the most bills per pipeline batch, and how long a lone
    # request waits for company before its batch leaves.
    batch_max: int
    batch_linger_ms: float
    max_inflight_batches: int
    # Bills waiting for a pipeline batch; past it issuing calls are refused at once
    # with RESOURCE_EXHAUSTED (retry shortly) instead of queueing without bound.
    queue_max: int
    # Empty: a private local Ray; else the address of a running cluster.
    ray_address: str
    ray_num_cpus: int
    # Actors per pipeline stage; on a cluster they spread over the nodes.
    stage_replicas: int
    # Verify the fiscal countersignature before archiving a bill.
    verify_fiscal: bool
    # The fiscal platform's public key (PEM or hex of the point 04||x||y), pinned:
    # a platform offering another key is refused. Empty: trusted on first use.
    fiscal_public_key_file: str
    rpc_timeout_s: float
    # Inline issuance waits this long for the fiscal platform, then returns the
    # bill pending and countersigns it later.
    fiscal_timeout_s: float
    # Recovery loop: how often it looks for unfinished bills, how many it takes,
    # and how long a bill in flight is left alone before it counts as abandoned.
    recovery_interval_s: float
    recovery_batch: int
    outbox_grace_s: float
    # Low-stock warning emails: SMTP server (empty host: in-system warnings only).
    smtp_host: str
    smtp_port: int
    smtp_from: str
    # Each SMTP network step may take this long; a warning's mail claim lasts a
    # few of them (usecases.stock.alerts.claim_lease).
    smtp_timeout_s: float
    # Paper bills may be destroyed this many days after their last use.
    paper_retention_days: int
    # How often automatic distribution tops issuing points up.
    stock_interval_s: float
    # Transparency log: how often a new tree head is signed (when the log grew).
    log_head_interval_s: float
    # TLS (README "Transport security"): on by default with a local CA under
    # data_dir/pki (ops/pki.py); the engine's certificate serves its port and is
    # its client certificate towards the signer and the platform, unless a hop
    # has a directory of its own (ca.pem, client.pem, client.key).
    tls: bool
    tls_ca_file: Path
    tls_cert_file: Path
    tls_key_file: Path
    tls_client_auth: bool
    signer_tls_dir: Path | None
    fiscal_tls_dir: Path | None
    # Identity (README "Security", docs/identity.md): every call of the engine's
    # services authenticated (EBILL_AUTH=0 only for benchmarks of its cost);
    # signed requests' timestamps within auth_window_s of the engine's clock and
    # their nonces refused for as long; staff sessions last session_ttl_s;
    # login_max_failures wrong sign-ins in a row lock a user for login_lock_s;
    # apps and sessions are cached auth_cache_s (how long a revocation may take).
    auth: bool
    auth_window_s: float
    session_ttl_s: float
    login_max_failures: int
    login_lock_s: float
    auth_cache_s: float
    # Personal data at rest (docs/personal-data.md): the key ring that seals
    # payer ID card, phone, e-mail and the canonical bytes (config/keys.py). The
    # default under data_dir is made on first run.
    data_key_file: Path
    # -- HTTP server (gateway area: ebill/http/) --------------------------------
    # The HTTP server beside gRPC in the engine process: the vendor-compatible
    # gateway, the REST mapping, and the routes other areas mount. Empty: no HTTP.
    # TLS like gRPC (the same certificate); client certificates only with
    # http_client_auth, because HIS vendors' clients authenticate by the
    # envelope's signature and rarely carry one.
    http_addr: str
    http_client_auth: bool
    # Base URL put into answers that point back at this server (the vendor
    # interface's pictureUrl, H5 addresses). Empty: https://<http_addr>.
    http_public_url: str
    # The charge item ("code:name") a deposit voucher issued through the vendor
    # interface (invoicePayMentVoucher, which sends no items) carries.
    gateway_deposit_charge: str
    # Run the engine's event loop on uvloop (gRPC, HTTP and the use cases share it).
    uvloop: bool
    # Rendering and public pages (usecases/rendering, ebill/http/public.py): the
    # base URL the bill's QR code links to (its verification page; empty: the QR
    # holds the bare signed payload), and how many rendered PDFs stay in memory.
    public_url: str = ""
    render_cache: int = 256

    def server_tls(self) -> TlsFiles | None:
        """What this process serves TLS with; None: plaintext."""
        if not self.tls:
            return None
        return TlsFiles(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)

    def hop_tls(self, hop_dir: Path | None) -> TlsFiles | None:
        """Mutual TLS towards the signer (``signer_tls_dir``) or the platform."""
        if not self.tls:
            return None
        if hop_dir is None:
            return self.server_tls()
        return TlsFiles.in_dir(hop_dir, "client")

    def public(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def load() -> Settings:
    data_dir = Path(_str("EBILL_DATA_DIR", "var")).resolve()
    return Settings(
        data_dir=data_dir,
        database_url=_str("EBILL_DATABASE_URL", ""),
        db_pool_size=_int("EBILL_DB_POOL_SIZE", 4),
        grpc_addr=_str("EBILL_GRPC_ADDR", "127.0.0.1:50051"),
        metrics_port=_int("EBILL_METRICS_PORT", 9464),
        signer_addr=_str("EBILL_SIGNER_ADDR", "127.0.0.1:50061"),
        signer_key_id=_str("EBILL_SIGNER_KEY_ID", "unit-sign"),
        fiscal_addr=_str("EBILL_FISCAL_ADDR", "127.0.0.1:50071"),
        fiscal_latency_ms=_int("EBILL_FISCAL_LATENCY_MS", 0),
        fiscal_failure_rate=_float("EBILL_FISCAL_FAILURE_RATE", 0.0),
        batch_max=_int("EBILL_BATCH_MAX", 200),
        batch_linger_ms=_float("EBILL_BATCH_LINGER_MS", 3.0),
        max_inflight_batches=_int("EBILL_MAX_INFLIGHT", 6),
        queue_max=_int("EBILL_QUEUE_MAX", 4000),
        ray_address=_str("EBILL_RAY_ADDRESS", ""),
        ray_num_cpus=_int("EBILL_RAY_NUM_CPUS", 2),
        stage_replicas=_int("EBILL_STAGE_REPLICAS", 1),
        verify_fiscal=_bool("EBILL_VERIFY_FISCAL", True),
        fiscal_public_key_file=_str("EBILL_FISCAL_PUBLIC_KEY_FILE", ""),
        rpc_timeout_s=_float("EBILL_RPC_TIMEOUT_S", 30.0),
        fiscal_timeout_s=_float("EBILL_FISCAL_TIMEOUT_S", 3.0),
        recovery_interval_s=_float("EBILL_RECOVERY_INTERVAL_S", 1.0),
        recovery_batch=_int("EBILL_RECOVERY_BATCH", 200),
        outbox_grace_s=_float("EBILL_OUTBOX_GRACE_S", 30.0),
        smtp_host=_str("EBILL_SMTP_HOST", ""),
        smtp_port=_int("EBILL_SMTP_PORT", 25),
        smtp_from=_str("EBILL_SMTP_FROM", "ebill@localhost"),
        smtp_timeout_s=_float("EBILL_SMTP_TIMEOUT_S", SMTP_TIMEOUT_S),
        paper_retention_days=_int("EBILL_PAPER_RETENTION_DAYS", 5 * 365),
        stock_interval_s=_float("EBILL_STOCK_INTERVAL_S", 2.0),
        log_head_interval_s=_float("EBILL_LOG_HEAD_INTERVAL_S", 10.0),
        tls=_bool("EBILL_TLS", True),
        tls_ca_file=_path("EBILL_TLS_CA_FILE", data_dir / "pki" / "ca.pem"),
        tls_cert_file=_path("EBILL_TLS_CERT_FILE", data_dir / "pki" / "engine.pem"),
        tls_key_file=_path("EBILL_TLS_KEY_FILE", data_dir / "pki" / "engine.key"),
        tls_client_auth=_bool("EBILL_TLS_CLIENT_AUTH", False),
        signer_tls_dir=_optional_path("EBILL_SIGNER_TLS_DIR"),
        fiscal_tls_dir=_optional_path("EBILL_FISCAL_TLS_DIR"),
        auth=_bool("EBILL_AUTH", True),
        auth_window_s=_float("EBILL_AUTH_WINDOW_S", 300.0),
        session_ttl_s=_float("EBILL_SESSION_TTL_S", 8 * 3600.0),
        login_max_failures=_int("EBILL_LOGIN_MAX_FAILURES", 5),
        login_lock_s=_float("EBILL_LOGIN_LOCK_S", 900.0),
        auth_cache_s=_float("EBILL_AUTH_CACHE_S", 5.0),
        data_key_file=_path("EBILL_DATA_KEY_FILE", data_dir / "keys" / "data.keys"),
        http_addr=_str("EBILL_HTTP_ADDR", "127.0.0.1:50080"),
        http_client_auth=_bool("EBILL_HTTP_CLIENT_AUTH", False),
        http_public_url=_str("EBILL_HTTP_PUBLIC_URL", ""),
        gateway_deposit_charge=_str("EBILL_GATEWAY_DEPOSIT_CHARGE", "A07:住院预交金"),
        uvloop=_bool("EBILL_UVLOOP", True),
        public_url=_str("EBILL_PUBLIC_URL", ""),
        render_cache=_int("EBILL_RENDER_CACHE", 256),
    )


def read_public_key(path: str) -> bytes:
    """The SM2 public key in ``path`` as an uncompressed point (65 bytes): a PEM
    SubjectPublicKeyInfo or the point in hex. Exits with the setting named when
    the file cannot be read or holds no such key."""
    name = "EBILL_FISCAL_PUBLIC_KEY_FILE"
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"{name}: cannot read {path}: {exc}") from exc
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise SystemExit(f"{name}: {path} is not a PEM public key") from exc
        # SubjectPublicKeyInfo of an EC key ends with the BIT STRING of the point.
        point = der[-65:]
    else:
        try:
            point = bytes.fromhex(text)
        except ValueError as exc:
            raise SystemExit(f"{name}: {path} holds neither PEM nor hex") from exc
    if len(point) != 65 or point[0] != 4:
        raise SystemExit(f"{name}: {path} does not hold an uncompressed SM2 point 04||x||y")
    return point

"""Every setting of the engine, read from EBILL_* environment variables.

One frozen value built once per process (:func:`load`); CLI flags default from it.

Each value is checked where it is read: a boolean that is not one of the known
words, a port out of range, a negative size or an address without a port is
refused at start with the EBILL_* name in the message (:class:`SettingError`,
a ``SystemExit``), instead of silently becoming a default. Any string setting may
instead come from a file named by ``<NAME>_FILE`` (systemd credentials, Docker or
Kubernetes secrets): ``EBILL_DATABASE_URL_FILE=/run/credentials/ebill/db-url``.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

from config.tls import TlsFiles
from config.tuning import SMTP_TIMEOUT_S

__all__ = [
    "SettingError",
    "Settings",
    "bench_no_translog",
    "load",
    "read_public_key",
    "split_addr",
]

log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Every EBILL_* name load() asked for: any other EBILL_* variable in the
# environment is probably a typo and is warned about (not refused: other
# processes of the stack read a few names of their own).
_KNOWN: set[str] = set()
_WARNED: set[str] = set()


class SettingError(SystemExit):
    """A setting that cannot be used; the message starts with its EBILL_* name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def _raw(name: str) -> str | None:
    """The variable's value, or the content of the file ``<name>_FILE`` names
    (one trailing newline dropped), or None when neither is set."""
    _KNOWN.add(name)
    _KNOWN.add(f"{name}_FILE")
    value = os.environ.get(name)
    file = os.environ.get(f"{name}_FILE")
    if file and value not in (None, ""):
        raise SettingError(name, f"set either {name} or {name}_FILE, not both")
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingError(f"{name}_FILE", f"cannot read {file}: {exc}") from exc
        return text[:-1] if text.endswith("\n") else text
    return value


def _str(name: str, default: str) -> str:
    raw = _raw(name)
    return default if raw is None else raw


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_raw(name) or default).strip().lower()
    if value not in choices:
        raise SettingError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer, ``minimum`` (0 unless said) and up: no setting counts below zero."""
    raw = _raw(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise SettingError(name, f"must be an integer, got {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f"{minimum} or more"
        raise SettingError(name, f"must be {bound}, got {value}")
    return value


def _float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    raw = _raw(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError as exc:
        raise SettingError(name, f"must be a number, got {raw!r}") from exc
    # nan compares false with everything: refuse it explicitly.
    if value != value or value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f"{minimum} or more"
        raise SettingError(name, f"must be {bound}, got {raw.strip()!r}")
    return value


def _bool(name: str, default: bool) -> bool:
    """1/true/yes/on or 0/false/no/off; anything else (``ture``) is refused:
    a typo must not turn a safety switch off."""
    raw = _raw(name)
    if raw is None or raw.strip() == "":
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingError(name, f"must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _loopback(addr: str) -> bool:
    if addr == "":
        return True  # that server is off
    try:
        host = split_addr(addr)[0]
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bench_no_translog() -> bool:
    """EBILL_BENCH_NO_TRANSLOG: leave the transparency log's leaves unwritten, for
    a benchmark of what the log costs. A real deployment must never run so, so
    the switch is refused unless the engine's gRPC and HTTP servers listen on
    loopback only, which no deployment serving a hospital
    does. Read from the environment by every process that writes leaves (the
    engine and its Ray workers), so it is a function, not only a field."""
    if not _bool("EBILL_BENCH_NO_TRANSLOG", False):
        return False
    for name, default in (
        ("EBILL_GRPC_ADDR", "127.0.0.1:50051"),
        ("EBILL_HTTP_ADDR", "127.0.0.1:50080"),
    ):
        if not _loopback(_str(name, default).strip()):
            raise SettingError(
                "EBILL_BENCH_NO_TRANSLOG",
                f"benchmark stacks only: refused while {name} listens beyond loopback",
            )
    return True


def _port(name: str, default: int) -> int:
    return _int(name, default, minimum=0, maximum=65535)


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) as (host, port); ValueError if not."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {addr!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} out of range")
    return host.strip("[]"), port


def _addr(name: str, default: str) -> str:
    """A ``host:port`` listen or dial address (port 0: pick or off, as the setting says)."""
    value = _str(name, default).strip()
    if value == "":
        return value
    try:
        split_addr(value)
    except ValueError as exc:
        raise SettingError(name, str(exc)) from exc
    return value


def _path(name: str, default: Path) -> Path:
    return Path(_raw(name) or default).resolve()


def _optional_path(name: str) -> Path | None:
    raw = _raw(name)
    return Path(raw).resolve() if raw else None


def _warn_unknown() -> None:
    for name in sorted(os.environ):
        if name.startswith("EBILL_") and name not in _KNOWN and name not in _WARNED:
            _WARNED.add(name)
            log.warning("%s is set but is no setting of config/settings.py (a typo?)", name)


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
    # --- Operations (wt-ops): listen addresses, logs, database role, inspection.
    # Prometheus metrics listen here (host:port; port 0: off). metrics_port is
    # its port, kept for the callers that only need that.
    metrics_addr: str
    # Plain HTTP health for load balancers and systemd (GET /healthz: 200 while
    # SERVING, 503 otherwise); empty: off (gRPC health is always on).
    health_addr: str
    # "text" or "json" (one object a line, for journald/Loki/ELK).
    log_format: str
    log_level: str
    # Empty: stderr. Else a file rotated at log_max_bytes, log_backups kept.
    log_file: Path | None
    log_max_bytes: int
    log_backups: int
    # application_name on every PostgreSQL connection (pg_stat_activity shows
    # which process and which pipeline stage holds each one).
    db_application_name: str
    # Apply migrations at start. Production: false, run `ebill migrate` as its
    # own step with an owner role, and run the engine with a role without DDL.
    migrate_on_start: bool
    # The embedded default's PostgreSQL: "auto" (pgserver's bundled binaries,
    # else the system's), "pgserver" or "system"; pg_bin_dir names the system's.
    embedded_pg: str
    pg_bin_dir: Path | None
    # SM2 implementation: "auto" (Tongsuo, else plain Python), "tongsuo" or
    # "python". engine.sm2 reads the variable itself (Ray workers, sandboxes);
    # here it is checked at start and shown.
    sm2_backend: str
    # Inspection (`ebill inspect`): a breach past these lines fails the report.
    disk_alert_pct: float
    backup_dir: Path
    backup_max_age_h: float
    stock_runway_min_days: float
    cert_min_days: int
    log_error_max: int
    # The CA certificate of the unit's signing key (CA证书服务), if there is one:
    # the inspection checks its expiry and that it is the key the signer uses.
    signer_cert_file: Path | None
    # --- Delivery to payers (issue #15, wt-delivery) ---------------------------
    # Run the delivery worker in this engine (jobs are queued by issuance anyway).
    delivery: bool
    delivery_interval_s: float
    delivery_batch: int
    delivery_concurrency: int
    # Tries per round before a job is recorded failed.
    delivery_max_attempts: int
    # Issuance first: delivery waits until issuance has been quiet this long,
    # unless a message has waited max_defer_s (then it trickles out meanwhile).
    delivery_quiet_s: float
    delivery_max_defer_s: float
    # Base URL of the public pages (ebill/http/public.py): links in messages and
    # what a bill's QR code points to (its verification page).
    public_url: str
    # CA file the providers' HTTPS is verified with; empty: the system's CAs.
    delivery_ca_file: str
    # SMS provider (empty URL: SMS off).
    sms_url: str
    sms_access_key_id: str
    sms_access_key_secret: str
    sms_sign_name: str
    # WeChat official account (empty URL: off).
    wechat_url: str
    wechat_app_id: str
    wechat_app_secret: str
    # Alipay open platform (empty URL: off): the app's RSA key, Alipay's public key.
    alipay_url: str
    alipay_app_id: str
    alipay_app_key_file: str
    alipay_public_key_file: str
    # SMTP for bills by email (the host and sender are smtp_host/smtp_from above).
    smtp_starttls: bool
    smtp_user: str
    smtp_password: str
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
    # Benchmark stacks only (bench/security.py): the transparency log's leaves
    # are not written (EBILL_BENCH_NO_TRANSLOG), to measure what the log costs.
    # Refused unless the engine listens on loopback only (bench_no_translog()).
    bench_no_translog: bool
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
    # The charge item ("code:name") a deposit voucher issued through the vendor
    # interface (invoicePayMentVoucher, which sends no items) carries.
    gateway_deposit_charge: str
    # Run the engine's event loop on uvloop (gRPC, HTTP and the use cases share it).
    uvloop: bool
    # -- onboarding (catalogue and certificates) --
    # How often units that synced their catalogue once are synced again from the
    # fiscal platform (0: only on demand, SyncCatalog / `ebill catalog sync`).
    catalog_sync_s: float = 0.0
    # A unit's active signing certificate expiring within this many days is warned
    # about (log, gauge ebill_certificate_days_left, the inspection's entry).
    cert_warn_days: int = 30
    # Rendering (usecases/rendering): rendered PDFs kept in memory. The public
    # pages' base URL (QR codes, links in messages) is public_url above.
    render_cache: int = 256
    # -- public pages (verification, 查验; issue #15) --
    # Verifications per client address a minute, and wrong check codes per bill
    # an hour (then that bill is refused for the rest of the hour; the check code
    # is only 6 hex digits). Counted in PostgreSQL (storage/ratelimit.py).
    verify_per_minute: int = 60
    verify_misses_per_hour: int = 10
    # Who may frame the H5 widget for apps (/widget/bill/..., widget.js): a CSP
    # frame-ancestors source list ("*": any https or http page; e.g.
    # "https://*.hospital.example https://servicewechat.com").
    widget_frame_ancestors: str = "*"

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
        """Every setting as text, secrets (provider keys, SMTP password) hidden."""
        return {
            f.name: "***" if f.name.endswith(("secret", "password")) else str(getattr(self, f.name))
            for f in fields(self)
        }


def load() -> Settings:
    data_dir = Path(_str("EBILL_DATA_DIR", "var")).resolve()
    metrics_addr = (
        _addr("EBILL_METRICS_ADDR", f"127.0.0.1:{_port('EBILL_METRICS_PORT', 9464)}")
        or "127.0.0.1:0"
    )
    settings = Settings(
        data_dir=data_dir,
        database_url=_str("EBILL_DATABASE_URL", ""),
        db_pool_size=_int("EBILL_DB_POOL_SIZE", 4, minimum=1),
        grpc_addr=_addr("EBILL_GRPC_ADDR", "127.0.0.1:50051"),
        metrics_port=split_addr(metrics_addr)[1],
        signer_addr=_addr("EBILL_SIGNER_ADDR", "127.0.0.1:50061"),
        signer_key_id=_str("EBILL_SIGNER_KEY_ID", "unit-sign"),
        fiscal_addr=_addr("EBILL_FISCAL_ADDR", "127.0.0.1:50071"),
        fiscal_latency_ms=_int("EBILL_FISCAL_LATENCY_MS", 0),
        fiscal_failure_rate=_float("EBILL_FISCAL_FAILURE_RATE", 0.0, maximum=1.0),
        batch_max=_int("EBILL_BATCH_MAX", 200, minimum=1),
        batch_linger_ms=_float("EBILL_BATCH_LINGER_MS", 3.0),
        max_inflight_batches=_int("EBILL_MAX_INFLIGHT", 6, minimum=1),
        queue_max=_int("EBILL_QUEUE_MAX", 4000, minimum=1),
        ray_address=_str("EBILL_RAY_ADDRESS", ""),
        ray_num_cpus=_int("EBILL_RAY_NUM_CPUS", 2, minimum=1),
        stage_replicas=_int("EBILL_STAGE_REPLICAS", 1, minimum=1),
        verify_fiscal=_bool("EBILL_VERIFY_FISCAL", True),
        fiscal_public_key_file=_str("EBILL_FISCAL_PUBLIC_KEY_FILE", ""),
        rpc_timeout_s=_float("EBILL_RPC_TIMEOUT_S", 30.0),
        fiscal_timeout_s=_float("EBILL_FISCAL_TIMEOUT_S", 3.0),
        recovery_interval_s=_float("EBILL_RECOVERY_INTERVAL_S", 1.0),
        recovery_batch=_int("EBILL_RECOVERY_BATCH", 200, minimum=1),
        outbox_grace_s=_float("EBILL_OUTBOX_GRACE_S", 30.0),
        smtp_host=_str("EBILL_SMTP_HOST", ""),
        smtp_port=_port("EBILL_SMTP_PORT", 25),
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
        # --- Operations (wt-ops)
        metrics_addr=metrics_addr,
        health_addr=_addr("EBILL_HEALTH_ADDR", ""),
        log_format=_choice("EBILL_LOG_FORMAT", "text", ("text", "json")),
        log_level=_choice(
            "EBILL_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
        ),
        log_file=_optional_path("EBILL_LOG_FILE"),
        log_max_bytes=_int("EBILL_LOG_MAX_BYTES", 50 * 1024 * 1024, minimum=1024),
        log_backups=_int("EBILL_LOG_BACKUPS", 5),
        db_application_name=_str("EBILL_DB_APPLICATION_NAME", "ebill-engine"),
        migrate_on_start=_bool("EBILL_MIGRATE_ON_START", True),
        embedded_pg=_choice("EBILL_EMBEDDED_PG", "auto", ("auto", "pgserver", "system")),
        pg_bin_dir=_optional_path("EBILL_PG_BIN_DIR"),
        sm2_backend=_choice("EBILL_SM2_BACKEND", "auto", ("auto", "tongsuo", "python")),
        disk_alert_pct=_float("EBILL_DISK_ALERT_PCT", 90.0, maximum=100.0),
        backup_dir=_path("EBILL_BACKUP_DIR", data_dir / "backups"),
        backup_max_age_h=_float("EBILL_BACKUP_MAX_AGE_H", 26.0),
        stock_runway_min_days=_float("EBILL_STOCK_RUNWAY_MIN_DAYS", 14.0),
        cert_min_days=_int("EBILL_CERT_MIN_DAYS", 30),
        log_error_max=_int("EBILL_LOG_ERROR_MAX", 0),
        signer_cert_file=_optional_path("EBILL_SIGNER_CERT_FILE"),
        delivery=_bool("EBILL_DELIVERY", True),
        delivery_interval_s=_float("EBILL_DELIVERY_INTERVAL_S", 0.5),
        delivery_batch=_int("EBILL_DELIVERY_BATCH", 100),
        delivery_concurrency=_int("EBILL_DELIVERY_CONCURRENCY", 16),
        delivery_max_attempts=_int("EBILL_DELIVERY_MAX_ATTEMPTS", 6),
        delivery_quiet_s=_float("EBILL_DELIVERY_QUIET_S", 1.0),
        delivery_max_defer_s=_float("EBILL_DELIVERY_MAX_DEFER_S", 60.0),
        # Empty: this engine's own HTTP server (EBILL_HTTP_ADDR).
        public_url=_str("EBILL_PUBLIC_URL", "")
        or f"https://{_str('EBILL_HTTP_ADDR', '127.0.0.1:50080')}",
        delivery_ca_file=_str("EBILL_DELIVERY_CA_FILE", ""),
        sms_url=_str("EBILL_SMS_URL", ""),
        sms_access_key_id=_str("EBILL_SMS_ACCESS_KEY_ID", ""),
        sms_access_key_secret=_str("EBILL_SMS_ACCESS_KEY_SECRET", ""),
        sms_sign_name=_str("EBILL_SMS_SIGN_NAME", "电子票据"),
        wechat_url=_str("EBILL_WECHAT_URL", ""),
        wechat_app_id=_str("EBILL_WECHAT_APP_ID", ""),
        wechat_app_secret=_str("EBILL_WECHAT_APP_SECRET", ""),
        alipay_url=_str("EBILL_ALIPAY_URL", ""),
        alipay_app_id=_str("EBILL_ALIPAY_APP_ID", ""),
        alipay_app_key_file=_str("EBILL_ALIPAY_APP_KEY_FILE", ""),
        alipay_public_key_file=_str("EBILL_ALIPAY_PUBLIC_KEY_FILE", ""),
        smtp_starttls=_bool("EBILL_SMTP_STARTTLS", False),
        smtp_user=_str("EBILL_SMTP_USER", ""),
        smtp_password=_str("EBILL_SMTP_PASSWORD", ""),
        auth=_bool("EBILL_AUTH", True),
        auth_window_s=_float("EBILL_AUTH_WINDOW_S", 300.0),
        session_ttl_s=_float("EBILL_SESSION_TTL_S", 8 * 3600.0),
        login_max_failures=_int("EBILL_LOGIN_MAX_FAILURES", 5),
        login_lock_s=_float("EBILL_LOGIN_LOCK_S", 900.0),
        auth_cache_s=_float("EBILL_AUTH_CACHE_S", 5.0),
        bench_no_translog=bench_no_translog(),
        data_key_file=_path("EBILL_DATA_KEY_FILE", data_dir / "keys" / "data.keys"),
        catalog_sync_s=_float("EBILL_CATALOG_SYNC_S", 0.0),
        cert_warn_days=_int("EBILL_CERT_WARN_DAYS", 30),
        render_cache=_int("EBILL_RENDER_CACHE", 256),
        verify_per_minute=_int("EBILL_VERIFY_PER_MINUTE", 60, minimum=1),
        verify_misses_per_hour=_int("EBILL_VERIFY_MISSES_PER_HOUR", 10, minimum=1),
        widget_frame_ancestors=_str("EBILL_WIDGET_FRAME_ANCESTORS", "*"),
        http_addr=_str("EBILL_HTTP_ADDR", "127.0.0.1:50080"),
        http_client_auth=_bool("EBILL_HTTP_CLIENT_AUTH", False),
        gateway_deposit_charge=_str("EBILL_GATEWAY_DEPOSIT_CHARGE", "A07:住院预交金"),
        uvloop=_bool("EBILL_UVLOOP", True),
    )
    _warn_unknown()
    return settings


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

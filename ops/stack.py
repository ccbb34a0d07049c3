"""Start the whole stack as real processes: PostgreSQL (embedded unless a URL is
given), the signing-server sandbox, the fiscal-platform sandbox and the engine.

Used by `ebill run`, the end-to-end tests and the benchmarks, so all three
exercise the same processes a deployment runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients._grpc import channel_credentials, open_channel
from clients.credentials import (
    AppCredentials,
    Credentials,
    SessionCredentials,
    open_engine_channel,
    sync_engine_channel,
)
from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from config import keys
from config.settings import load
from config.tls import TlsFiles
from engine.identity import TOTP_STEP_S, totp
from engine.sealing import KeyRing
from ops import pki
from ops.sandboxes.alipay import ensure_keys as ensure_alipay_keys
from ops.sandboxes.signer import KeyStore
from protos.ebill.v1 import identity_pb2, identity_pb2_grpc
from storage.db import EmbeddedPostgres, connect_pool, open_embedded
from storage.syspg import SystemPostgres
from usecases.bootstrap import bootstrap_demo
from usecases.demo import UNIT_CODE
from usecases.identity import Identity
from usecases.identity.demo import DemoCredentials, seed_identity
from usecases.identity.manage import IdentityAdmin

__all__ = [
    "Stack",
    "StackConfig",
    "free_port",
    "http_ssl_context",
    "sync_channel",
    "wait_for_port",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StackConfig:
    data_dir: Path
    database_url: str = ""
    grpc_port: int = 0
    signer_port: int = 0
    fiscal_port: int = 0
    metrics_port: int = 0
    # The delivery providers' sandboxes (SMS, WeChat, Alipay; issue #15).
    sms_port: int = 0
    wechat_port: int = 0
    alipay_port: int = 0
    # The engine's HTTP server (gateway, REST); -1: none.
    http_port: int = 0
    fiscal_latency_ms: int = 0
    fiscal_failure_rate: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # Where process logs go; None: inherit the terminal.
    log_dir: Path | None = None
    # TLS everywhere with the local PKI under data_dir/pki (EBILL_TLS, default on).
    tls: bool = field(default_factory=lambda: load().tls)

    def __post_init__(self) -> None:
        self.grpc_port = self.grpc_port or free_port()
        self.signer_port = self.signer_port or free_port()
        self.fiscal_port = self.fiscal_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        self.sms_port = self.sms_port or free_port()
        self.wechat_port = self.wechat_port or free_port()
        self.alipay_port = self.alipay_port or free_port()
        self.http_port = self.http_port or free_port()

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def signer_addr(self) -> str:
        return f"127.0.0.1:{self.signer_port}"

    @property
    def fiscal_addr(self) -> str:
        return f"127.0.0.1:{self.fiscal_port}"

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}" if self.http_port > 0 else ""


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pg: EmbeddedPostgres | SystemPostgres | None = None
        self.database_url = config.database_url
        # Credentials the engine and the provider sandboxes share, new per stack.
        self.sms_key = ("LTAI" + secrets.token_hex(8), secrets.token_urlsafe(24))
        self.wechat_app = ("wx" + secrets.token_hex(8), secrets.token_hex(16))
        self.alipay_app_id = "2021" + str(secrets.randbelow(10**12)).zfill(12)
        self._demo: DemoCredentials | None = None
        # The last TOTP time step used per demo user (totp_code).
        self._totp_steps: dict[str, int] = {}

    def provider_url(self, name: str) -> str:
        """Base URL of the "sms", "wechat" or "alipay" sandbox."""
        port = {
            "sms": self.config.sms_port,
            "wechat": self.config.wechat_port,
            "alipay": self.config.alipay_port,
        }[name]
        return f"{'https' if self.config.tls else 'http'}://127.0.0.1:{port}"

    @property
    def provider_ca(self) -> str:
        """The CA file the providers' HTTPS chains to (empty with TLS off)."""
        return str(self.config.data_dir.resolve() / "pki" / "ca.pem") if self.config.tls else ""

    def delivery_env(self) -> dict[str, str]:
        """What points the engine (and the sandboxes) at the provider sandboxes."""
        alipay = self.config.data_dir.resolve() / "alipay"
        return {
            "EBILL_DELIVERY_CA_FILE": self.provider_ca,
            "EBILL_SMS_URL": self.provider_url("sms"),
            "EBILL_SMS_ACCESS_KEY_ID": self.sms_key[0],
            "EBILL_SMS_ACCESS_KEY_SECRET": self.sms_key[1],
            "EBILL_WECHAT_URL": self.provider_url("wechat"),
            "EBILL_WECHAT_APP_ID": self.wechat_app[0],
            "EBILL_WECHAT_APP_SECRET": self.wechat_app[1],
            "EBILL_ALIPAY_URL": self.provider_url("alipay"),
            "EBILL_ALIPAY_APP_ID": self.alipay_app_id,
            "EBILL_ALIPAY_APP_KEY_FILE": str(alipay / "app.key"),
            "EBILL_ALIPAY_PUBLIC_KEY_FILE": str(alipay / "alipay.pub"),
        }

    def env(self) -> dict[str, str]:
        c = self.config
        env = dict(os.environ)
        env.update(
            EBILL_DATA_DIR=str(c.data_dir),
            EBILL_DATABASE_URL=self.database_url,
            EBILL_GRPC_ADDR=c.grpc_addr,
            EBILL_SIGNER_ADDR=c.signer_addr,
            EBILL_FISCAL_ADDR=c.fiscal_addr,
            EBILL_METRICS_PORT=str(c.metrics_port),
            EBILL_FISCAL_LATENCY_MS=str(c.fiscal_latency_ms),
            EBILL_FISCAL_FAILURE_RATE=str(c.fiscal_failure_rate),
            EBILL_TLS="1" if c.tls else "0",
            EBILL_HTTP_ADDR=c.http_addr,
        )
        env.update(self.delivery_env())
        if self.fiscal_key_file.exists():
            # make run and the tests run pinned to the sandbox platform's key.
            env["EBILL_FISCAL_PUBLIC_KEY_FILE"] = str(self.fiscal_key_file)
        env.update(c.extra_env)
        return env

    def tls(self, name: str = "client") -> TlsFiles | None:
        """The local PKI's files of ``name`` (ops/pki.py); None with TLS off. The
        engine is "engine"; tests, the CLI and benchmarks are "client"."""
        if not self.config.tls:
            return None
        return TlsFiles.in_dir(self.config.data_dir.resolve() / "pki", name)

    def channel(
        self, to: str = "engine", *, creds: Credentials | bool | None = True
    ) -> grpc.aio.Channel:
        """A channel to the engine (or "signer", "fiscal") as the demo client:
        TLS with its client certificate when TLS is on, and (the engine) every
        call signed as the demo HIS app, or with ``creds`` (a staff session from
        :meth:`login`; False: no credentials). Every test, benchmark and CLI call
        to the stack goes through here."""
        addr = {
            "engine": self.config.grpc_addr,
            "signer": self.config.signer_addr,
            "fiscal": self.config.fiscal_addr,
        }[to]
        if to != "engine":
            return open_channel(addr, self.tls())
        return open_engine_channel(addr, self.tls(), self._creds(creds))

    def sync_channel(self, *, creds: Credentials | bool | None = True) -> grpc.Channel:
        """A blocking channel to the engine, like :meth:`channel` (locust, checks)."""
        return sync_engine_channel(self.config.grpc_addr, self.tls(), self._creds(creds))

    def _creds(self, creds: Credentials | bool | None) -> Credentials | None:
        if creds is True:
            return self.app_credentials()
        if creds is False:
            return None
        return creds

    @property
    def credentials_file(self) -> Path:
        """The demo app's secret and the demo staff's passwords (0600), written
        at seeding: what `make run` prints and what tests and benchmarks use."""
        return self.config.data_dir / "demo-credentials.json"

    @property
    def demo(self) -> DemoCredentials:
        if self._demo is None:
            self._demo = DemoCredentials.from_json(
                json.loads(self.credentials_file.read_text(encoding="utf-8"))
            )
        return self._demo

    def app_credentials(self) -> AppCredentials | None:
        """The demo HIS app's credentials; None before seeding."""
        if self._demo is None and not self.credentials_file.exists():
            return None
        return AppCredentials(self.demo.app_id, self.demo.app_secret)

    async def login(self, username: str, password: str | None = None) -> SessionCredentials:
        """Sign a demo staff member in (with their TOTP code when their role needs
        one); the session's credentials, for :meth:`channel`."""
        staff = self.demo.staff.get(username)
        demo_password = password is None
        if password is None:
            assert staff is not None, f"no demo user {username}"
            password = staff.password
        with_code = bool(staff and staff.totp_secret)
        # Another process (a second Stack on the same database, the CLI) may have
        # used this step's code: then the next step's, once.
        for attempt in (1, 2):
            code = await asyncio.to_thread(self.totp_code, username) if with_code else ""
            try:
                async with self.channel(creds=False) as ch:
                    resp = await identity_pb2_grpc.IdentityServiceStub(ch).Login(
                        identity_pb2.LoginRequest(username=username, password=password, totp=code),
                        timeout=30,
                    )
                return SessionCredentials(resp.token)
            except grpc.aio.AioRpcError as err:
                retry = with_code and demo_password
                retry = retry and err.code() == grpc.StatusCode.UNAUTHENTICATED
                if not retry or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def totp_code(self, username: str) -> str:
        """A demo staff member's TOTP code for a time step after any this stack
        used for them: the engine accepts a code once (RFC 6238 section 5.2),
        and tests sign one user in more than once in 30 s. The next step's code
        is accepted too (one step of clock drift), so only a third sign-in
        within one step waits, for the step to end."""
        staff = self.demo.staff[username]
        assert staff.totp_secret, f"{username} has no second factor"
        step = self._totp_steps.get(username, -1) + 1
        wait = (step - 1) * TOTP_STEP_S - time.time()
        if wait > 0:
            time.sleep(wait + 0.05)
        step = max(step, int(time.time() // TOTP_STEP_S))
        self._totp_steps[username] = step
        return totp(staff.totp_secret, step * TOTP_STEP_S)

    def data_keys(self) -> KeyRing:
        """The data key ring the engine will load (config/keys.py)."""
        named = self.env().get(keys.SETTING)
        if named:
            return keys.read(Path(named))
        return keys.ensure(keys.default_path(self.config.data_dir.resolve()))

    @property
    def http_url(self) -> str:
        """Base URL of the engine's HTTP server (https with TLS on)."""
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.http_addr}"

    def http_client(self, *, timeout: float = 60.0) -> httpx.AsyncClient:
        """An HTTP client to the engine that trusts the local CA (and presents the
        demo client's certificate, as gRPC channels do)."""
        return httpx.AsyncClient(
            base_url=self.http_url, timeout=timeout, verify=self._http_verify()
        )

    def http_client_sync(self, *, timeout: float = 60.0) -> httpx.Client:
        """The blocking flavour (Locust users, scripts)."""
        return httpx.Client(base_url=self.http_url, timeout=timeout, verify=self._http_verify())

    def _http_verify(self) -> ssl.SSLContext | bool:
        tls = self.tls()
        return True if tls is None else http_ssl_context(tls)

    @property
    def fiscal_key_file(self) -> Path:
        """The fiscal sandbox's public key (hex), written before the sandbox starts."""
        return self.config.data_dir / "fiscal" / "fiscal-public.hex"

    def pin_fiscal_key(self) -> None:
        """Make the sandbox platform's key now (the sandbox loads the same file) and
        write its public half where the engine's EBILL_FISCAL_PUBLIC_KEY_FILE points."""
        key = KeyStore(self.fiscal_key_file.parent).get("fiscal")
        self.fiscal_key_file.write_text(key.public.point.hex() + "\n", encoding="ascii")

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = None
        env = dict(env or {})
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            raw = f"{name}.log"
            if args[0] == "ebill.cli":
                # The engine writes its own log, rotated by size (config/logs.py);
                # what it prints outside logging (Ray, a crash) goes to .out.
                env.setdefault("EBILL_LOG_FILE", str(self.config.log_dir / f"{name}.log"))
                raw = f"{name}.out"
            out = open(self.config.log_dir / raw, "ab")
        # Own process group: kill_process takes Ray's helpers down with the
        # engine, as a machine crash would.
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**self.env(), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_database(self) -> str:
        if not self.database_url:
            # pgserver's, or the system's where pgserver has no wheel (EBILL_EMBEDDED_PG).
            self.pg = open_embedded(load(), self.config.data_dir)
            self.database_url = self.pg.url
        return self.database_url

    def seed_demo(self, stock: int) -> None:
        """Migrate, then set up the demo hospital: its key registered with the
        fiscal platform and ``stock`` numbers per issuing point and bill code."""

        async def seed() -> None:
            pool = await connect_pool(self.database_url)
            try:
                async with (
                    SignerClient(
                        self.config.signer_addr,
                        self.env().get("EBILL_SIGNER_KEY_ID", "unit-sign"),
                        tls=self.tls("engine"),
                    ) as signer,
                    FiscalClient(self.config.fiscal_addr, tls=self.tls("engine")) as fiscal,
                ):
                    await bootstrap_demo(pool, signer, fiscal, stock=stock)
                identity = Identity(pool, self.data_keys())
                self._demo = await seed_identity(IdentityAdmin(identity), UNIT_CODE)
            finally:
                await pool.close()

        asyncio.run(seed())
        path = self.credentials_file
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        assert self._demo is not None
        path.write_text(json.dumps(self._demo.to_json(), indent=2) + "\n", encoding="utf-8")

    def start_signer(self) -> None:
        self._spawn("signer", "ops.sandboxes.signer")
        wait_for_channel(self.config.signer_addr, self.procs["signer"], self.tls())

    def start_fiscal(self, **env: str) -> None:
        """Start (or restart) the fiscal sandbox; env overrides e.g. its latency."""
        self.pin_fiscal_key()
        self._spawn("fiscal", "ops.sandboxes.fiscal", env=env)
        wait_for_channel(self.config.fiscal_addr, self.procs["fiscal"], self.tls())

    def start_providers(self) -> None:
        """The SMS, WeChat and Alipay sandboxes (HTTPS with the local PKI)."""
        ensure_alipay_keys(self.config.data_dir.resolve() / "alipay")
        for name in ("sms", "wechat", "alipay"):
            addr = self.provider_url(name).rpartition("/")[2]
            self._spawn(name, f"ops.sandboxes.{name}", "--addr", addr)
        for name in ("sms", "wechat", "alipay"):
            wait_for_port(self.provider_url(name).rpartition("/")[2], self.procs[name])

    def start_sandboxes(self) -> None:
        self.start_signer()
        self.start_fiscal()
        self.start_providers()

    def start_engine(self, timeout: float = 120, **env: str) -> None:
        self._spawn("engine", "ebill.cli", "serve", env=env)
        wait_for_health(self.config.grpc_addr, self.procs["engine"], timeout, self.tls())

    def kill_process(self, name: str) -> None:
        """SIGKILL a process and everything in its process group: no clean-up runs."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def kill_database(self) -> None:
        """SIGKILL the embedded PostgreSQL: the postmaster and every backend at once,
        as a machine crash would (orphan backends would keep its shared memory and
        block the restart). Committed work must survive: fsync is on."""
        assert self.pg is not None, "only the embedded PostgreSQL can be killed"
        self.pg.kill()

    def restart_database(self) -> None:
        """Start the embedded PostgreSQL again on its data (crash recovery runs)."""
        assert self.pg is not None, "only the embedded PostgreSQL can be restarted"
        self.pg.restart()

    def stop_process(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever it left in its group (Ray helpers) goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> Stack:
        if self.config.tls:
            # Made here, once, before the processes that read it start.
            pki.ensure(self.config.data_dir.resolve() / "pki")
        self.start_database()
        self.start_sandboxes()
        return self

    def stop(self) -> None:
        for name in ("engine", "fiscal", "signer", "sms", "wechat", "alipay"):
            self.stop_process(name)
        if self.pg is not None:
            self.pg.cleanup()
            self.pg = None

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def http_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """Trust ``tls.ca``, present ``tls.cert``/``tls.key``: HTTP over the local PKI."""
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def sync_channel(addr: str, tls: TlsFiles | None) -> grpc.Channel:
    """A blocking channel (readiness checks, locust): TLS with ``tls``."""
    if tls is None:
        return grpc.insecure_channel(addr)
    return grpc.secure_channel(addr, channel_credentials(tls))


def wait_for_port(addr: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until something accepts TCP connections on ``addr`` (an HTTP sandbox)."""
    host, _, port = addr.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {addr} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {addr} after {timeout}s")


def wait_for_channel(
    addr: str, proc: subprocess.Popen[bytes], tls: TlsFiles | None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {addr} exited with {proc.returncode}")
        with sync_channel(addr, tls) as ch:
            try:
                grpc.channel_ready_future(ch).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise TimeoutError(f"nothing listening on {addr} after {timeout}s")


def wait_for_health(
    addr: str, proc: subprocess.Popen[bytes], timeout: float, tls: TlsFiles | None
) -> None:
    deadline = time.monotonic() + timeout
    with sync_channel(addr, tls) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"engine exited with {proc.returncode}")
            try:
                resp = stub.Check(
                    health_pb2.HealthCheckRequest(service="ebill.v1.IssuanceService"), timeout=1
                )
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise TimeoutError(f"engine on {addr} not serving after {timeout}s")

"""The embedded default on PostgreSQL from the system's packages, where pgserver
has no wheel (CPython 3.13, Linux ARM64): initdb and pg_ctl from
``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql`` package) or
EBILL_PG_BIN_DIR, a private cluster in ``data_dir/pg`` on a Unix socket only,
run as the ``postgres`` system user when we are root (PostgreSQL refuses root).

Same face as storage.db.EmbeddedPostgres: ``url``, ``socket_path``, ``kill``,
``restart``, ``cleanup``, ``bin_dir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["SystemPostgres", "find_bin_dirs", "server_version"]

log = logging.getLogger(__name__)

_SYSTEM_ROOT = Path("/usr/lib/postgresql")
_SUPERUSER = "postgres"


def server_version(bin_dir: Path, tool: str = "pg_ctl") -> int:
    """The major version of the PostgreSQL tools in ``bin_dir`` (16 for 16.4)."""
    out = subprocess.run(
        [str(bin_dir / tool), "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if m is None:
        raise RuntimeError(f"cannot read the version of {bin_dir / tool}: {out!r}")
    return int(m.group(1))


def find_bin_dirs(configured: Path | None = None) -> list[Path]:
    """Directories holding initdb and pg_ctl, the configured one first, then the
    system's, newest version first."""
    found: list[Path] = []
    if configured is not None:
        found.append(configured)
    if _SYSTEM_ROOT.is_dir():
        system = [d / "bin" for d in _SYSTEM_ROOT.iterdir() if (d / "bin" / "initdb").exists()]
        found += sorted(
            system, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, reverse=True
        )
    return found


def _run_as() -> str | None:
    """The system user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SUPERUSER)
    except KeyError as exc:
        raise SystemExit(
            "the system PostgreSQL cannot run as root and there is no 'postgres' user: "
            "install Debian's postgresql package (it creates one) or run as another user"
        ) from exc
    return _SUPERUSER


class SystemPostgres:
    """A private cluster of the system's PostgreSQL in ``data_dir/pg``."""

    def __init__(self, data_dir: Path, bin_dir: Path | None = None) -> None:
        dirs = find_bin_dirs(bin_dir)
        if not dirs:
            raise SystemExit(
                "no PostgreSQL found for the embedded default: pgserver is not installed "
                "and there is no /usr/lib/postgresql/*/bin (apt-get install postgresql) "
                "or EBILL_PG_BIN_DIR"
            )
        self.bin_dir = dirs[0]
        self.pgdata = (data_dir / "pg").resolve()
        self.user = _run_as()
        self.version = server_version(self.bin_dir)
        # Unix socket paths are limited to ~107 bytes: a short directory of our own.
        tag = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        self.socket_dir = Path(tempfile.gettempdir()) / f"ebill-pg-{tag}"
        self._started = False
        self._init()
        self._start()
        self.url = f"postgresql://{_SUPERUSER}:@/ebill?host={self.socket_dir}"
        self._ensure_database("ebill")

    def _cmd(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # cwd "/": the server user may not enter our working directory.
        out = subprocess.run(
            [str(self.bin_dir / tool), *args],
            # Its own group, not root's: a root-owned 0701 parent must be passable
            # through "other", which a process in group root does not get.
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return out

    def _init(self) -> None:
        version_file = self.pgdata / "PG_VERSION"
        if version_file.exists():
            have = int(version_file.read_text().strip())
            if have != self.version:
                raise SystemExit(
                    f"{self.pgdata} holds a PostgreSQL {have} cluster but the system's is "
                    f"{self.version} ({self.bin_dir}): use EBILL_EMBEDDED_PG=pgserver, set "
                    "EBILL_PG_BIN_DIR to a matching version, or restore a backup into a "
                    "fresh EBILL_DATA_DIR (`ebill restore`)"
                )
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.pgdata)
        self.pgdata.chmod(0o700)
        log.warning(
            "embedded default on the system's PostgreSQL %s (%s): pgserver is not in use",
            self.version,
            self.bin_dir,
        )
        self._cmd(
            "initdb",
            "-D",
            str(self.pgdata),
            "--auth=trust",
            "--auth-local=trust",
            "--encoding=utf8",
            "-U",
            _SUPERUSER,
        )

    def _hand_over(self, path: Path) -> None:
        """Make ``path`` the server user's, and its parents passable by it."""
        if self.user is None:
            return
        info = pwd.getpwnam(self.user)
        os.chown(path, info.pw_uid, info.pw_gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def _running(self) -> bool:
        return self._cmd("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def _start(self) -> None:
        if self._running():
            return
        self.socket_dir.mkdir(mode=0o777, exist_ok=True)
        self.socket_dir.chmod(0o777)
        options = f"-k {self.socket_dir} -c listen_addresses=''"
        self._cmd(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "-l",
            str(self.pgdata / "server.log"),
            "start",
        )
        self._started = True

    def _ensure_database(self, name: str) -> None:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
        host = ["-h", str(self.socket_dir), "-U", _SUPERUSER]
        if self._cmd("psql", *host, "-d", "postgres", "-tAc", query).stdout.strip() != "1":
            self._cmd("createdb", *host, name)

    @property
    def socket_path(self) -> str:
        return str(next(self.socket_dir.glob(".s.PGSQL.*")))

    def _pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (crash rehearsal)."""
        import psutil  # type: ignore[import-untyped]

        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            postmaster = psutil.Process(pid)
            procs = [postmaster, *postmaster.children(recursive=True)]
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGKILL)
            psutil.wait_procs(procs, timeout=10)

    def restart(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self._start()
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)

    def cleanup(self) -> None:
        """Stop the server if this object started it (others may be using it)."""
        if self._started and self._running():
            self._cmd("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)
        self._started = False

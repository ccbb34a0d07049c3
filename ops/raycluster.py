"""A multi-node Ray cluster on one machine, for scale-out tests and rehearsals.

Each node is a `ray start --block` process in its own process group, so stopping
the cluster stops exactly its own processes (plain `ray stop` would stop every
Ray on the machine). Nodes share a random token (Ray's token authentication,
on by default since 2.5x), passed to the engine through RAY_AUTH_TOKEN.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from ops.stack import free_port

__all__ = ["LocalRayCluster"]


class LocalRayCluster:
    def __init__(self, temp_dir: Path, *, nodes: int = 3, cpus_per_node: int = 1) -> None:
        self.temp_dir = temp_dir
        self.nodes = nodes
        self.cpus = cpus_per_node
        self.port = free_port()
        self.token = secrets.token_hex(32)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a driver (the engine) needs to join."""
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "EBILL_RAY_ADDRESS": self.address,
        }

    def _ray(self, *args: str, log: str) -> None:
        ray_cli = str(Path(sys.executable).with_name("ray"))
        # Several nodes on one host: every listening port of a node must differ,
        # including those with fixed defaults (the dashboard agent's 52365).
        ports = [
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--node-manager-port", str(free_port()),
            "--object-manager-port", str(free_port()),
        ]  # fmt: skip
        out = open(self.temp_dir / f"{log}.log", "ab")
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.procs.append(
            subprocess.Popen(
                [ray_cli, "start", "--block", "--disable-usage-stats", "--node-ip-address",
                 "127.0.0.1", "--num-cpus", str(self.cpus), *ports, *args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip

    def start(self, timeout: float = 90) -> LocalRayCluster:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> LocalRayCluster:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._ray(
            "--head", "--port", str(self.port), "--include-dashboard=false",
            "--temp-dir", str(self.temp_dir), log="head",
        )  # fmt: skip
        self._wait_up("head", timeout)
        # One at a time: nodes joining at once race for the same socket names in
        # the shared session directory.
        for i in range(1, self.nodes):
            self._ray("--address", self.address, log=f"worker{i}")
            self._wait_up(f"worker{i}", timeout)
        return self

    def _wait_up(self, log: str, timeout: float) -> None:
        """The node has said it is up (`ray start` prints this once joined)."""
        text = "Ray runtime started"
        deadline = time.monotonic() + timeout
        path = self.temp_dir / f"{log}.log"
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a Ray node exited; see {self.temp_dir}")
            time.sleep(0.3)
        raise TimeoutError(f"Ray nodes not up after {timeout}s; see {self.temp_dir}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Daemons that left the group still name the head's address or temp dir.
        for marker in (self.address, str(self.temp_dir)):
            subprocess.run(["pkill", "-9", "-f", marker], check=False)
        self.procs.clear()

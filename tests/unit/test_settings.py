"""Settings are checked at start: a bad value is refused with its EBILL_* name,
secrets may come from files, and the metrics address binds where it is told."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from config import logs
from config.settings import SettingError, load, split_addr


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("EBILL_VERIFY_FISCAL", "ture", "1/true/yes/on"),
        ("EBILL_TLS", "enabled", "0/false/no/off"),
        ("EBILL_SMTP_PORT", "70000", "0..65535"),
        ("EBILL_METRICS_PORT", "-1", "0..65535"),
        ("EBILL_DB_POOL_SIZE", "0", "1 or more"),
        ("EBILL_QUEUE_MAX", "-5", "1 or more"),
        ("EBILL_BATCH_MAX", "many", "an integer"),
        ("EBILL_FISCAL_FAILURE_RATE", "1.5", "0.0..1.0"),
        ("EBILL_RPC_TIMEOUT_S", "nan", "0.0 or more"),
        ("EBILL_GRPC_ADDR", "localhost", "host:port"),
        ("EBILL_METRICS_ADDR", "0.0.0.0:99999", "out of range"),
        ("EBILL_LOG_FORMAT", "xml", "text, json"),
        ("EBILL_DISK_ALERT_PCT", "120", "0.0..100.0"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError) as err:
        load()
    assert str(err.value.code).startswith(f"{name}: ")
    assert words in str(err.value.code)
    assert err.value.name == name


@pytest.mark.parametrize("word", ["1", "true", "YES", " on ", "0", "false", "No", "OFF"])
def test_boolean_words(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("EBILL_TLS_CLIENT_AUTH", word)
    assert load().tls_client_auth is (word.strip().lower() in ("1", "true", "yes", "on"))


def test_a_secret_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("postgresql://ebill:s3cret@db.example:5432/ebill\n", encoding="utf-8")
    monkeypatch.setenv("EBILL_DATABASE_URL_FILE", str(secret))
    assert load().database_url == "postgresql://ebill:s3cret@db.example:5432/ebill"
    monkeypatch.setenv("EBILL_DATABASE_URL", "postgresql://other")
    with pytest.raises(SettingError, match="not both"):
        load()
    monkeypatch.delenv("EBILL_DATABASE_URL")
    monkeypatch.setenv("EBILL_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingError, match="EBILL_DATABASE_URL_FILE: cannot read"):
        load()


def test_metrics_address(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load().metrics_addr == "127.0.0.1:9464"
    monkeypatch.setenv("EBILL_METRICS_PORT", "9500")
    assert (load().metrics_addr, load().metrics_port) == ("127.0.0.1:9500", 9500)
    monkeypatch.setenv("EBILL_METRICS_ADDR", "0.0.0.0:9600")
    assert (load().metrics_addr, load().metrics_port) == ("0.0.0.0:9600", 9600)
    assert split_addr("[::]:9464") == ("::", 9464)


def test_an_unknown_ebill_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EBILL_VERIFY_FISCALL", "0")
    with caplog.at_level(logging.WARNING):
        load()
    assert "EBILL_VERIFY_FISCALL is set but is no setting" in caplog.text


def test_the_cli_refuses_to_start_on_a_bad_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "EBILL_DATA_DIR": str(tmp_path), "EBILL_TLS": "maybe"}
    out = subprocess.run(
        [sys.executable, "-m", "ebill.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "EBILL_TLS: must be one of" in out.stderr


def test_json_logs_rotate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "engine.log"
    monkeypatch.setenv("EBILL_LOG_FORMAT", "json")
    monkeypatch.setenv("EBILL_LOG_FILE", str(log_file))
    monkeypatch.setenv("EBILL_LOG_MAX_BYTES", "2048")
    monkeypatch.setenv("EBILL_LOG_BACKUPS", "2")
    root = logging.getLogger()
    # configure() closes the handlers it replaces: give it none of pytest's.
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    handler = logs.configure(load())
    try:
        for i in range(200):
            logging.getLogger("ebill.test").warning("line %d", i, extra={"bill_no": i})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("ebill.test").exception("failed")
    finally:
        root.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["engine.log", "engine.log.1", "engine.log.2"]
    assert all(p.stat().st_size <= 2048 + 512 for p in log_file.parent.iterdir())
    last = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert last[-1]["level"] == "ERROR" and "ValueError: boom" in last[-1]["exc"]
    assert last[-2]["msg"] == "line 199" and last[-2]["bill_no"] == 199


@pytest.mark.parametrize(
    ("grpc_addr", "http_addr"),
    [("0.0.0.0:50051", "127.0.0.1:50080"), ("127.0.0.1:50051", "10.1.2.3:443")],
)
def test_the_log_off_switch_is_refused_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, grpc_addr: str, http_addr: str
) -> None:
    # EBILL_BENCH_NO_TRANSLOG leaves the transparency log unwritten: benchmark
    # stacks only, so an engine reachable from the network refuses to start.
    monkeypatch.setenv("EBILL_BENCH_NO_TRANSLOG", "1")
    monkeypatch.setenv("EBILL_GRPC_ADDR", grpc_addr)
    monkeypatch.setenv("EBILL_HTTP_ADDR", http_addr)
    with pytest.raises(SettingError) as err:
        load()
    assert str(err.value).startswith("EBILL_BENCH_NO_TRANSLOG: benchmark stacks only")


def test_the_log_off_switch_is_honoured_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBILL_GRPC_ADDR", "127.0.0.1:50051")
    monkeypatch.setenv("EBILL_HTTP_ADDR", "[::1]:50080")
    assert load().bench_no_translog is False  # off unless asked
    monkeypatch.setenv("EBILL_BENCH_NO_TRANSLOG", "1")
    assert load().bench_no_translog is True

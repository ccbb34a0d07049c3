"""The data key ring (engine.sealing.KeyRing) from the file EBILL_DATA_KEY_FILE.

Secrets come from a file, never from the command line or the environment, where
``ps`` and process listings show them. The file holds named keys, one a line::

    # comments and blank lines are ignored
    index = <64 hex digits>     HMAC-SM3 key of the search index (32 bytes)
    sm4.1 = <32 hex digits>     sealing key 1 (SM4, 16 bytes)
    sm4.2 = <32 hex digits>     sealing key 2
    active = 2                  the key that seals; all of them open

The embedded default (the setting left at ``<data_dir>/keys/data.keys``) makes
the file with a fresh ring on first run, mode 0600 in a 0700 directory, as
ops/pki.py makes the local CA; a file named by a deployment is never made or
changed by the engine (``ebill keys rotate`` changes it on an operator's word).
docs/personal-data.md describes rotation.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from config.settings import Settings
from engine.sealing import INDEX_KEY_SIZE, KEY_SIZE, KeyRing

__all__ = ["default_path", "ensure", "load", "parse", "read", "render", "write"]

SETTING = "EBILL_DATA_KEY_FILE"
_LINE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*=\s*(\S+)\s*$")
_SM4 = re.compile(r"^sm4\.(\d{1,5})$")


def default_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "data.keys"


def parse(text: str, where: str = SETTING) -> KeyRing:
    """The ring a key file's text describes; ValueError naming the line otherwise."""
    keys: dict[int, bytes] = {}
    index: bytes | None = None
    active: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{where}: line {number}: expected 'name = value'")
        name, value = match.groups()
        if name == "active":
            if not value.isdigit():
                raise ValueError(f"{where}: line {number}: active must be a key number")
            active = int(value)
            continue
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{where}: line {number}: {name} is not hex") from None
        if name == "index":
            if len(key) != INDEX_KEY_SIZE:
                raise ValueError(f"{where}: line {number}: index must be {INDEX_KEY_SIZE} bytes")
            index = key
        elif (sm4 := _SM4.match(name)) is not None:
            key_id = int(sm4.group(1))
            if key_id in keys:
                raise ValueError(f"{where}: line {number}: {name} given twice")
            if len(key) != KEY_SIZE:
                raise ValueError(f"{where}: line {number}: {name} must be {KEY_SIZE} bytes")
            keys[key_id] = key
        else:
            raise ValueError(f"{where}: line {number}: unknown key name {name!r}")
    if index is None:
        raise ValueError(f"{where}: no index key")
    if not keys:
        raise ValueError(f"{where}: no sm4.<n> sealing key")
    # Without an explicit line the newest key seals: what rotation appends.
    try:
        return KeyRing(keys, max(keys) if active is None else active, index)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def render(ring: KeyRing) -> str:
    lines = [
        "# ebill data keys (docs/personal-data.md). Secret: keep it mode 0600 and back it",
        "# up with the database; a blob sealed under a key that is lost cannot be opened.",
        f"index = {ring.index_key.hex()}",
        *(f"sm4.{key_id} = {ring.keys[key_id].hex()}" for key_id in sorted(ring.keys)),
        f"active = {ring.active}",
    ]
    return "\n".join(lines) + "\n"


def read(path: Path) -> KeyRing:
    """The ring in ``path``; SystemExit naming the setting when the file cannot be
    read, is readable by others, or is malformed."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"{SETTING}: cannot read {path}: {exc}") from exc
    if mode & stat.S_IROTH:
        raise SystemExit(f"{SETTING}: {path} is readable by every user; chmod 600 it")
    try:
        return parse(text, f"{SETTING} {path}")
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def write(path: Path, ring: KeyRing, *, exclusive: bool = False) -> None:
    """Write ``ring`` to ``path`` mode 0600, atomically (a temporary file renamed
    over it), so a reader never sees half a file. ``exclusive``: fail with
    FileExistsError when ``path`` exists (two first runs racing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(render(ring))
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic, and refuses an existing path
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure(path: Path) -> KeyRing:
    """The ring in ``path``, made with a fresh ring first if there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        try:
            write(path, KeyRing.generate(), exclusive=True)
        except FileExistsError:
            pass  # another process of the same first run made it: use theirs
    return read(path)


def load(settings: Settings) -> KeyRing:
    """The engine's ring: made on first run for the embedded default, read (and
    required to exist) for a file a deployment names."""
    if settings.data_key_file == default_path(settings.data_dir):
        return ensure(settings.data_key_file)
    return read(settings.data_key_file)

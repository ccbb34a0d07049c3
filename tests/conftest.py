"""Marks every test with its layer (its directory) and starts nothing: the stack
fixture lives in tests/e2e/conftest.py, the database in tests/storage/conftest.py,
so `make test-fast` never starts Ray or a sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.sealing import KeyRing
from tests.factories import RING

LAYERS = ("unit", "storage", "e2e")
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if _HERE in path.parents and path.relative_to(_HERE).parts[0] in LAYERS:
            item.add_marker(path.relative_to(_HERE).parts[0])


@pytest.fixture(scope="session")
def ring() -> KeyRing:
    """A data key ring for tests that seal or open bills rows (one per session)."""
    return RING

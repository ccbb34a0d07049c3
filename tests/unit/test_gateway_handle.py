"""The gateway's checks in order, with a registry of apps in memory: every
refusal answers its vendor code, and nothing (not even the noise) is written
before the request is known to be good."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pytest

from config.settings import load
from ebill.http.gateway.envelope import sign
from ebill.http.gateway.routes import handle
from ebill.http.services import Services

KEY_BYTES = b"s3cret-key-of-the-his"
KEY = KEY_BYTES.decode()


@dataclass(frozen=True)
class FakeApp:
    app_id: str
    unit_code: str = "U1"
    places: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset({"*"})
    permissions: frozenset[str] = frozenset({"bill.issue", "bill.read"})
    secret: bytes = KEY_BYTES
    enabled: bool = True


@dataclass
class FakeApps:
    apps: dict[str, FakeApp]
    claimed: list[str] = field(default_factory=list)

    async def app(self, app_id: str) -> FakeApp | None:
        return self.apps.get(app_id)

    async def claim_nonce(self, app_id: str, nonce: str, at: datetime) -> bool:
        if nonce in self.claimed:
            return False
        self.claimed.append(nonce)
        return True


def services(apps: FakeApps) -> Services:
    # Only the envelope path and testServerConnect run: no use case is touched.
    none: Any = None
    return Services(
        settings=load(),
        pool=none,
        issuance=none,
        lifecycle=none,
        paper=none,
        gateway=none,
        fiscal=none,
        # The gateway reads only the AppRegistry part of the identity use case.
        identity=cast(Any, apps),
    )


def envelope(business: Any, *, appid: str = "his", key: str = KEY, noise: str = "n-1") -> bytes:
    text = business if isinstance(business, str) else json.dumps(business)
    data = base64.b64encode(text.encode()).decode()
    return json.dumps(
        {"appid": appid, "data": data, "noise": noise, "version": "1.0",
         "sign": sign(appid, data, noise, key)}
    ).encode()  # fmt: skip


def read(env: dict[str, str]) -> tuple[str, str]:
    inner = json.loads(base64.b64decode(env["data"]))
    return inner["result"], base64.b64decode(inner["message"]).decode()


@pytest.fixture
def apps() -> FakeApps:
    return FakeApps(
        {
            "his": FakeApp("his"),
            "kiosk": FakeApp("kiosk", methods=frozenset({"vendor:getEBillByBusNo"})),
            "off": FakeApp("off", enabled=False),
        }
    )


async def test_a_good_call_is_answered_signed(apps: FakeApps) -> None:
    env, result = await handle(services(apps), "testServerConnect", envelope({"testValue": "x"}))
    assert result == "S0000" and read(env) == ("S0000", "连接成功: x")
    assert env["sign"] == sign("his", env["data"], env["noise"], KEY)
    assert apps.claimed == ["n-1"]


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        ("testServerConnect", b"{oops", "E1001"),
        ("testServerConnect", envelope({}, appid="nobody"), "E1002"),
        ("testServerConnect", envelope({}, appid="off"), "E1002"),
        ("testServerConnect", envelope({}, key="wrong-key"), "E1003"),
        ("noSuchInterface", envelope({}), "E1005"),
        ("generateAccount", envelope({}), "E2005"),
        ("writeOffEBill", envelope({}), "E1006"),  # no bill.red_flush permission
        ("invoiceEBillOutpatient", envelope({}, appid="kiosk"), "E1006"),  # not its method
        ("testServerConnect", envelope("{not json"), "E1001"),
        ("testServerConnect", envelope("[1, 2]"), "E1001"),
    ],
)
async def test_refusals_answer_their_code_and_claim_no_noise(
    apps: FakeApps, method: str, body: bytes, code: str
) -> None:
    env, result = await handle(services(apps), method, body)
    assert result == code and read(env)[0] == code
    assert apps.claimed == []  # nothing written
    if code == "E1002" or body == b"{oops":
        assert env["sign"] == ""  # no app known: no key to sign with
    else:
        assert env["sign"] == sign(
            "his" if b'"his"' in body else "kiosk", env["data"], env["noise"], KEY
        )


async def test_a_replayed_noise_is_refused(apps: FakeApps) -> None:
    body = envelope({"testValue": "x"}, noise="same-noise")
    _, first = await handle(services(apps), "testServerConnect", body)
    env, again = await handle(services(apps), "testServerConnect", body)
    assert (first, again) == ("S0000", "E1004")
    assert "same-noise" in read(env)[1]


async def test_an_app_bound_to_its_methods_may_call_them(apps: FakeApps) -> None:
    env, result = await handle(
        services(apps), "getEBillByBusNo", envelope({"busDateTime": "x"}, appid="kiosk")
    )
    # It passes the gate and is refused on its business fields.
    assert result == "E2001" and "busNo" in read(env)[1]

"""The composition root opens one client per external system and hands the same
object to every use case, edge and loop; the H5 bill path has one source."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from starlette.routing import Match, Route

from config.settings import load
from ebill.compose import build_use_cases
from ebill.http.public import routes
from ebill.wiring import open_clients
from engine.delivery import BILL_PATH, CHECK_PARAM, bill_path, bill_url
from engine.sealing import KeyRing
from usecases.rendering import ClientKeys


def _settings() -> Any:
    return replace(
        load(),
        tls=False,  # nothing connects; channels are only opened and closed
        fiscal_addr="127.0.0.1:1",
        signer_addr="127.0.0.1:1",
        smtp_host="127.0.0.1",
        sms_url="https://127.0.0.1:1",
        wechat_url="https://127.0.0.1:1",
        alipay_url="",
        fiscal_public_key_file="",
    )


async def test_every_use_case_shares_the_one_client_of_each_system() -> None:
    settings = _settings()
    clients = open_clients(settings)
    none: Any = None
    pipeline = cast(Any, SimpleNamespace(issue=print, issue_prepared=print))
    uc = build_use_cases(settings, none, KeyRing.generate(), pipeline, clients)
    channels = uc.delivery.channels
    assert channels.sms is clients.sms and channels.wechat is clients.wechat
    assert channels.mail is clients.mail and channels.alipay is None
    assert uc.selfservice.sms is clients.sms
    assert uc.catalogue._fiscal is clients.fiscal
    assert uc.certificates._fiscal is clients.fiscal
    assert uc.certificates._signer is clients.signer
    assert uc.certificates._ca is clients.ca
    keys = cast(ClientKeys, uc.public.rendering.keys)
    assert keys._fiscal is clients.fiscal and keys._signer is clients.signer
    # One close closes every channel; opening one first shows it is closed.
    clients.fiscal.stub()
    clients.signer.stub()
    await clients.close()
    assert clients.fiscal._channel is None and clients.signer._channel is None
    assert clients.sms is not None and clients.sms._http.is_closed


def test_a_bill_link_is_served_by_the_h5_route() -> None:
    services = cast(Any, SimpleNamespace(rendering=None, verification=SimpleNamespace(guard=None)))
    [h5] = [r for r in routes(services) if isinstance(r, Route) and r.path == BILL_PATH]
    url = bill_url("https://bills.example/", "12345678", "0000000042", "a1b2c3")
    path, query = url.removeprefix("https://bills.example").split("?")
    match, scope = h5.matches({"type": "http", "path": path, "method": "GET"})
    assert match is Match.FULL
    assert scope["path_params"] == {"bill_code": "12345678", "bill_no": "0000000042"}
    assert query == f"{CHECK_PARAM}=a1b2c3"


def test_bill_path_is_relative_and_quotes_its_segments() -> None:
    assert bill_path("12345678", "0000000042") == "/bill/12345678/0000000042"
    assert bill_url("", "12345678", "0000000042", "a1b2c3") == "/bill/12345678/0000000042?c=a1b2c3"
    assert bill_path("a/b", "c?d") == "/bill/a%2Fb/c%3Fd"

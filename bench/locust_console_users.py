"""Locust users of the finance console: the locustfile bench/locust_console.py
runs (kept apart so the runner's process is not patched by gevent)."""

from __future__ import annotations

import itertools
import json
import os
import random
from datetime import datetime

from locust import HttpUser, between, task

from bench.locust_console import ENV_BILLS, ENV_CA, ENV_STAFF, ENV_THINK, USERS
from engine.model import CST

__all__ = ["ConsoleUser"]

_next_user = itertools.count()


def _think() -> float:
    return float(os.environ.get(ENV_THINK, "3"))


class ConsoleUser(HttpUser):
    """One member of staff at the console."""

    wait_time = between(0.5 * _think(), 1.5 * _think())

    def on_start(self) -> None:
        staff: dict[str, str] = json.loads(os.environ.get(ENV_STAFF, "{}"))
        self.client.verify = os.environ.get(ENV_CA) or True
        self.username = USERS[next(_next_user) % len(USERS)]
        with open(os.environ[ENV_BILLS], encoding="utf-8") as f:
            self.bills: list[list[str]] = json.load(f)
        self.places = ["001", "002"]
        if self.username.startswith("cashier-"):
            place = self.username.removeprefix("cashier-")
            self.places = [place]
            self.bills = [b for b in self.bills if b[0] == place]
        with self.client.post(
            "/console/login",
            data={"username": self.username, "password": staff[self.username], "totp": ""},
            allow_redirects=False,
            name="sign in",
            catch_response=True,
        ) as r:
            if r.status_code != 303:
                r.failure(f"sign-in answered {r.status_code}")

    def _bill(self) -> list[str]:
        return random.choice(self.bills)

    @task(3)
    def dashboard(self) -> None:
        self.client.get("/console/", name="dashboard")

    @task(4)
    def search_day(self) -> None:
        place = random.choice(self.places)
        self.client.get(f"/console/bills?place={place}", name="search: point, newest")

    @task(3)
    def search_today(self) -> None:
        place = random.choice(self.places)
        today = datetime.now(CST).date().isoformat()
        self.client.get(
            f"/console/bills?place={place}&from={today}&to={today}", name="search: point, today"
        )

    @task(3)
    def search_payer(self) -> None:
        b = self._bill()
        self.client.get(f"/console/bills?place={b[0]}&id_card={b[3]}", name="search: ID card")

    @task(2)
    def search_serial(self) -> None:
        b = self._bill()
        self.client.get(f"/console/bills?place={b[0]}&bus_no={b[4]}", name="search: serial")

    @task(3)
    def open_bill(self) -> None:
        b = self._bill()
        self.client.get(f"/console/bills/{b[1]}/{b[2]}", name="bill detail")

    @task(2)
    def report(self) -> None:
        if self.username != "auditor":
            return
        self.client.get("/console/reports?kind=issuance&by=place", name="report: issuance by point")

    @task(1)
    def trend(self) -> None:
        if self.username != "auditor":
            return
        self.client.get("/console/reports?kind=trend&step=hour", name="report: trend")

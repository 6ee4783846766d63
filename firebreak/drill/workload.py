"""Clients that record a history: every write and read with invoke and completion times, its
outcome (ok / failed / unknown), the site that answered and the primary that acknowledged it.

Writers behave like real clients that know every site's front door: they retry an unanswered
request with the same idempotency key, and stop sending to a door that keeps failing.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

REPORT = {"reporter_kind": "paid_user", "service": "messenger", "window_start": "2022-10-15T15:19:00+09:00",
          "window_end": "2022-10-16T01:00:00+09:00", "claimed_amount": 5000, "contact": "drill@example.org",
          "description": "drill"}


def report(key: str) -> dict:
    """The report a drill's client sends under idempotency key `key`: each from its own contact,
    as a real outage's reports come from many people. From one contact, every report is the same
    claim, and verifying each means reading all of them (the verifier's duplicate check), which
    makes a long drill slower the longer it runs."""
    return {**REPORT, "contact": f"drill+{key}@example.org"}


@dataclass(frozen=True)
class Op:
    kind: str          # write | read
    key: str           # idempotency key (writes) or report id (reads)
    invoke: float      # monotonic seconds
    complete: float
    outcome: str       # ok | failed | unknown
    site: str          # the site whose door was asked
    status: int = 0
    primary: str = ""  # server that acknowledged a write
    timeline: int = 0
    report_id: int = 0
    detail: str = ""  # why it failed, as the answer (or the error) said: the first 200 characters


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)


class Router(threading.Thread):
    """Follows the control plane's routing table (any living console's /api/routing), as a
    client library or a global load balancer would: after detection, dead sites get no traffic."""

    def __init__(self, consoles: dict[str, str], stop: threading.Event, interval: float = 0.2):
        super().__init__(daemon=True)
        self.consoles, self.stop_event, self.interval = dict(consoles), stop, interval
        self.serving: list[str] | None = None

    def run(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self.stop_event.is_set():
                for url in self.consoles.values():
                    try:
                        self.serving = client.get(url + "/api/routing").json()["serving"]
                        break
                    except (httpx.HTTPError, ValueError, KeyError):
                        continue
                self.stop_event.wait(self.interval)


class Writer(threading.Thread):
    """Sends reports one after another, each until a door acknowledges it.

    A request a door has not answered within HEDGE seconds is also sent, with the same key, to
    another door, and the first acknowledgement wins (a hedged request, as in "The Tail at
    Scale"): a living door answers a write within the app's write deadline (1.5 s) unless a
    failover holds it, so a request still unanswered then most likely went to a door that just
    went silent. Without the hedge a writer whose request left the instant before its door's
    site lost power waited its whole timeout (3 s), and so did, sooner or later in the second
    before the agents agreed, every writer: the chaos run's faults that silenced a door cost
    3.05-3.30 s though no commit waited. The idempotency key makes the second copy safe."""

    BREAKER = 10.0  # seconds a door that did not answer is left alone (a client-side circuit breaker)
    HEDGE = 1.0

    def __init__(self, doors: dict[str, str], history: History, stop: threading.Event, seed: int,
                 rate: float = 0.0, timeout: float = 3.0, router: Router | None = None,
                 hedge: float | None = None):
        super().__init__(daemon=True)
        self.doors, self.history, self.stop_event = dict(doors), history, stop
        self.rng = random.Random(seed)
        self.rate, self.timeout, self.router = rate, timeout, router
        self.hedge = self.HEDGE if hedge is None else hedge
        self._copies: list[threading.Thread] = []
        self.bad_until: dict[str, float] = {}

    def pick(self, besides: tuple[str, ...] = ()) -> str | None:
        """A door to send to: one that has not failed lately, among those the routing table serves;
        None when `besides` leaves none (a hedge then waits for the first copy)."""
        now = time.monotonic()
        doors = [s for s in self.doors if s not in besides]
        good = [s for s in doors if self.bad_until.get(s, 0) <= now]
        serving = self.router.serving if self.router is not None else None
        if serving:
            good = [s for s in good if s in serving] or [s for s in doors if s in serving]
        choices = good or doors
        return self.rng.choice(choices) if choices else None

    def _send(self, client: httpx.Client, site: str, key: str) -> bool:
        """One copy of the write `key` to `site`'s door, recorded; True when acknowledged."""
        t0 = time.monotonic()
        try:
            r = client.post(self.doors[site] + "/api/reports", json=report(key), headers={"Idempotency-Key": key})
            t1 = time.monotonic()
            if r.status_code == 201:
                self.history.add(Op("write", key, t0, t1, "ok", site, 201, r.headers.get("x-firebreak-primary", ""),
                                    int(r.headers.get("x-firebreak-timeline", 0) or 0), r.json().get("id", 0)))
                return True
            self.history.add(Op("write", key, t0, t1, "unknown" if r.status_code >= 500 else "failed", site,
                                r.status_code))
        except httpx.HTTPError:
            self.history.add(Op("write", key, t0, time.monotonic(), "unknown", site))
            self.bad_until[site] = time.monotonic() + self.BREAKER
        return False

    def _round(self, client: httpx.Client, key: str) -> bool:
        """One try of `key`: a copy to one door and, when it is slow, a hedge to another. True as
        soon as either is acknowledged; a copy still in flight then finishes on its own thread
        (never queued behind other abandoned copies: each ends within the timeout)."""
        answers: queue.SimpleQueue[bool] = queue.SimpleQueue()

        def send(site: str) -> None:
            copy = threading.Thread(target=lambda: answers.put(self._send(client, site, key)), daemon=True)
            copy.start()
            self._copies = [c for c in self._copies if c.is_alive()] + [copy]

        sent = (self.pick() or next(iter(self.doors)),)
        send(sent[0])
        try:
            return answers.get(timeout=self.hedge)  # answered in time: acknowledged, or try again
        except queue.Empty:
            other = self.pick(besides=sent)
            if other is None:
                return answers.get()
            sent += (other,)
            send(other)
        # Two copies in flight: the first acknowledgement wins; neither means try again.
        return answers.get() or answers.get()

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self.stop_event.is_set():
                key = uuid.uuid4().hex
                while not self.stop_event.is_set():  # the same request until it is answered
                    if self._round(client, key):
                        break
                    time.sleep(0.05)
                if self.rate:
                    time.sleep(self.rng.expovariate(self.rate))
            for copy in self._copies:  # their answers are the history's too, not the closed client's errors
                copy.join(timeout=self.timeout + 1)


ORDINARY_TABLE = "drill_ordinary_writes"


class OrdinaryWriter(threading.Thread):
    """A database client written the ordinary way: psycopg with libpq's defaults (no timeouts,
    no keep-alive tuning, one host), through one site's database door, reconnecting on any error.
    Its writes are recorded as kind "sql", keyed by a fresh UUID each."""

    def __init__(self, site: str, dsn: str, history: History, stop: threading.Event, interval: float = 0.02):
        super().__init__(daemon=True)
        self.site, self.dsn, self.history, self.stop_event, self.interval = site, dsn, history, stop, interval

    def run(self) -> None:
        import psycopg

        conn = None
        while not self.stop_event.is_set():
            key = uuid.uuid4().hex
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                row = conn.execute(f"INSERT INTO {ORDINARY_TABLE} (key) VALUES (%s) "
                                   "RETURNING host(inet_server_addr())", (key,)).fetchone()
                self.history.add(Op("sql", key, t0, time.monotonic(), "ok", self.site, primary=row[0] if row else ""))
            except psycopg.Error as e:
                # A commit whose answer never came may or may not have happened: unknown, as in the HTTP writers.
                outcome = "failed" if conn is None or isinstance(e, psycopg.errors.ReadOnlySqlTransaction) else "unknown"
                self.history.add(Op("sql", key, t0, time.monotonic(), outcome, self.site))
                if conn is not None:
                    conn.close()
                conn = None
                self.stop_event.wait(0.05)
            self.stop_event.wait(self.interval)
        if conn is not None:
            conn.close()


def prepare_ordinary_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {ORDINARY_TABLE} (key text PRIMARY KEY, at timestamptz DEFAULT now())")


class Reader(threading.Thread):
    """Reads a known report from one site's door, a few times a second."""

    def __init__(self, site: str, door: str, report_id: int, history: History, stop: threading.Event,
                 interval: float = 0.1, token: str = ""):
        super().__init__(daemon=True)
        self.site, self.door, self.report_id = site, door, report_id
        # Reading by number is for the service's own tools: the app's admin token.
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.history, self.stop_event, self.interval = history, stop, interval

    def run(self) -> None:
        with httpx.Client(timeout=2.0, headers=self.headers) as client:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                try:
                    r = client.get(f"{self.door}/api/reports/{self.report_id}")
                    ok = r.status_code == 200
                    self.history.add(Op("read", str(self.report_id), t0, time.monotonic(), "ok" if ok else "failed",
                                        self.site, r.status_code))
                except httpx.HTTPError:
                    self.history.add(Op("read", str(self.report_id), t0, time.monotonic(), "failed", self.site))
                time.sleep(self.interval)


def seed_report(door: str, patience: float = 20.0) -> int:
    """One report for the readers to read. Retried with the same key while the answer is unknown
    (503) or the door does not answer: a lab just healed may still be reconnecting its pools."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + patience
    while True:
        try:
            r = httpx.post(door + "/api/reports", json=report(key), headers={"Idempotency-Key": key}, timeout=10)
            if r.status_code < 500:
                r.raise_for_status()
                return int(r.json()["id"])
        except httpx.TransportError:
            pass
        if time.monotonic() >= deadline:
            raise httpx.HTTPError(f"could not store the drill's seed report through {door} within {patience:g} s")
        time.sleep(0.5)


class ConsoleFlood(threading.Thread):
    """Hostile traffic for drills and benchmarks: anonymous concurrent requests at ops consoles,
    half wrong sign-ins, half wrong Bearer tokens, until stopped. `answers` counts status codes
    (and client errors by name)."""

    def __init__(self, consoles: list[str], per_console: int = 16):
        super().__init__(daemon=True)
        self.consoles, self.per_console = list(consoles), per_console
        self.stop_event = threading.Event()
        self.answers: dict = {}

    def run(self) -> None:
        import asyncio

        async def worker(url: str, i: int) -> None:
            async with httpx.AsyncClient(timeout=15) as client:
                while not self.stop_event.is_set():
                    try:
                        if i % 2:
                            r = await client.post(url + "/login", data={"name": "admin", "token": f"guess{i}"})
                        else:
                            r = await client.post(url + "/api/actions/freeze", json={"site": "x" * 30},
                                                  headers={"Authorization": f"Bearer admin.guess{i}"})
                        key: object = r.status_code
                    except httpx.HTTPError as e:
                        key = type(e).__name__
                    self.answers[key] = self.answers.get(key, 0) + 1

        async def main() -> None:
            await asyncio.gather(*(worker(u, i) for u in self.consoles for i in range(self.per_console)))
        asyncio.run(main())


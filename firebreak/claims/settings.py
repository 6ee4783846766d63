"""The claims service's settings, read from the environment (passwords stay out of argv)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firebreak.control.keys import DEFAULT as DEFAULT_KEYS
from firebreak.errors import InputError, Problem
from firebreak.resources import example

DEFAULT_POLICY = example("kakao-2022-policy.yaml")


SESSION_COOKIE = "firebreak_review"  # the reviewer console's session; the edge refuses actions without one


@dataclass
class Settings:
    site: str
    dsn: str
    local_dsn: str
    any_dsn: str = ""
    pool_size: int = 16
    # A write that has not been answered by then is abandoned (503, outcome unknown, retry with
    # the same key): a primary that lost power answers nothing, and TCP would take far longer.
    admin_token: str = ""
    write_deadline: float = 1.5
    read_deadline: float = 0.5
    # Reports waiting for their group commit. Without a primary the queue drains at nothing while
    # intake keeps arriving: past this many, a write is refused at once (503, Retry-After) instead
    # of waiting out its deadline in an ever longer line.
    write_queue: int = 2_048
    anonymous_audit_every: float = 60.0  # seconds between rows summarising anonymous refusals
    # A refusal to a flooder (over its rate, or a reviewer action without a session) is answered
    # after this long, up to refusal_hold requests held at once, then at once (see edge.Edge).
    refusal_delay: float = 1.0
    refusal_hold: int = 256
    secure_cookies: bool = False  # behind HTTPS doors: reviewers' session cookie is Secure
    # Shared by every site's app, so a reviewer's session and a half-filled form work at any door.
    session_secret: str = ""
    trusted_proxies: frozenset[str] = frozenset()  # our doors: their X-Forwarded-For is believed
    portal_rate: float = 20.0     # form submissions, status lookups and keyless API reports per source per minute
    # Keyless API reports per source per second, when an operator sets it (FIREBREAK_API_RATE): a
    # deployment whose every client shares one address. Unset: a person's allowance, the portal's.
    api_rate: float | None = None
    partner_keys: str = ""        # the partners' keys file (partners.py): `<name> sha256:<hex>` a line, mode 0600
    partner_rate: float = 5000.0  # reports per second per partner key (partners' bulk filing systems, drills)
    # The admin listener (the agent's hooks, /metrics, /docs, /openapi.json), ADDR:PORT, on an
    # address the public door does not forward to. Unset: one listener serves everything, as before.
    admin_bind: str = ""
    admin_failures_per_minute: float = 10.0  # failed admin-token attempts a source may make
    review_deadline: float = 5.0  # the reviewer console's and the verifier's statements on the primary
    policy: str = str(DEFAULT_POLICY)
    ledger: str = ""              # an outage ledger file, added to what the agents recorded in etcd
    etcd: tuple[str, ...] = ()
    etcd_access: str = ""         # a locked etcd: the claims role's access file (it may read the ledger)
    ledger_prefix: str = DEFAULT_KEYS.ledger
    credit_dir: str = ""          # credit batches (firebreak claims credit --out DIR): the status page's credited totals
    webhooks: str = ""            # webhook subscribers (claims/subscribers.py); unset: no notifier runs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings from FIREBREAK_* variables; a missing or malformed one is an InputError
        naming the variable (the service exits 2 with it, not a traceback)."""
        e = _Env(os.environ if env is None else env)
        s = cls(site=e.need("FIREBREAK_SITE_NAME"), dsn=e.need("FIREBREAK_DSN"),
                local_dsn=e.need("FIREBREAK_LOCAL_DSN"),
                any_dsn=e.text("FIREBREAK_ANY_DSN") or e.need("FIREBREAK_LOCAL_DSN"),
                pool_size=e.number("FIREBREAK_POOL_SIZE", 16, int),
                admin_token=e.text("FIREBREAK_ADMIN_TOKEN"),
                write_deadline=e.number("FIREBREAK_WRITE_DEADLINE", 1.5),
                write_queue=e.number("FIREBREAK_WRITE_QUEUE", 2048, int),
                anonymous_audit_every=e.number("FIREBREAK_ANONYMOUS_AUDIT_EVERY", 60.0),
                refusal_delay=e.number("FIREBREAK_REFUSAL_DELAY", 1.0),
                refusal_hold=e.number("FIREBREAK_REFUSAL_HOLD", 256, int),
                secure_cookies=e.text("FIREBREAK_SECURE_COOKIES") in ("1", "true", "yes"),
                session_secret=e.text("FIREBREAK_SESSION_SECRET"),
                trusted_proxies=frozenset(e.items("FIREBREAK_TRUSTED_PROXIES")),
                portal_rate=e.number("FIREBREAK_PORTAL_RATE", 20.0),
                api_rate=e.number("FIREBREAK_API_RATE", 0.0) if e.text("FIREBREAK_API_RATE") else None,
                partner_keys=e.text("FIREBREAK_PARTNER_KEYS"),
                partner_rate=e.number("FIREBREAK_PARTNER_RATE", 5000.0),
                admin_bind=e.text("FIREBREAK_ADMIN_BIND"),
                admin_failures_per_minute=e.number("FIREBREAK_ADMIN_FAILURES_PER_MINUTE", 10.0),
                review_deadline=e.number("FIREBREAK_REVIEW_DEADLINE", 5.0),
                policy=e.text("FIREBREAK_POLICY") or str(DEFAULT_POLICY),
                ledger=e.text("FIREBREAK_LEDGER"),
                etcd=tuple(e.items("FIREBREAK_ETCD")),
                etcd_access=e.text("FIREBREAK_ETCD_ACCESS"),
                credit_dir=e.text("FIREBREAK_CREDIT_DIR"),
                webhooks=e.text("FIREBREAK_WEBHOOKS"))
        if e.problems:
            raise InputError(e.problems)
        return s


class _Env:
    """Reads variables, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.problems = env, []

    def text(self, name: str) -> str:
        return self.env.get(name, "")

    def need(self, name: str) -> str:
        value = self.env.get(name, "")
        if not value:
            self.problems.append(Problem("environment", name, "is not set; the claims service needs it"))
        return value

    def items(self, name: str) -> list[str]:
        return [x.strip() for x in self.env.get(name, "").split(",") if x.strip()]

    def number(self, name: str, default: float, kind: type = float) -> Any:
        raw = self.env.get(name, "")
        if raw == "":
            return kind(default)
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or value < 0 or value != value:
            self.problems.append(Problem("environment", name, f"{raw!r} is not a {'whole ' if kind is int else ''}"
                                                              "number of 0 or more"))
            return kind(default)
        return value

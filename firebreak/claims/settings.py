"""The claims service's settings, read from the environment (passwords stay out of argv)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from firebreak.control.keys import DEFAULT as DEFAULT_KEYS
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

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(site=env["FIREBREAK_SITE_NAME"], dsn=env["FIREBREAK_DSN"],
                   local_dsn=env["FIREBREAK_LOCAL_DSN"],
                   any_dsn=env.get("FIREBREAK_ANY_DSN") or env["FIREBREAK_LOCAL_DSN"],
                   pool_size=int(env.get("FIREBREAK_POOL_SIZE", "16")),
                   admin_token=env.get("FIREBREAK_ADMIN_TOKEN", ""),
                   write_deadline=float(env.get("FIREBREAK_WRITE_DEADLINE", "1.5")),
                   write_queue=int(env.get("FIREBREAK_WRITE_QUEUE", "2048")),
                   anonymous_audit_every=float(env.get("FIREBREAK_ANONYMOUS_AUDIT_EVERY", "60")),
                   refusal_delay=float(env.get("FIREBREAK_REFUSAL_DELAY", "1")),
                   refusal_hold=int(env.get("FIREBREAK_REFUSAL_HOLD", "256")),
                   secure_cookies=env.get("FIREBREAK_SECURE_COOKIES", "") in ("1", "true", "yes"),
                   session_secret=env.get("FIREBREAK_SESSION_SECRET", ""),
                   trusted_proxies=frozenset(x for x in env.get("FIREBREAK_TRUSTED_PROXIES", "").split(",") if x),
                   portal_rate=float(env.get("FIREBREAK_PORTAL_RATE", "20")),
                   api_rate=float(env["FIREBREAK_API_RATE"]) if env.get("FIREBREAK_API_RATE") else None,
                   partner_keys=env.get("FIREBREAK_PARTNER_KEYS", ""),
                   partner_rate=float(env.get("FIREBREAK_PARTNER_RATE", "5000")),
                   admin_bind=env.get("FIREBREAK_ADMIN_BIND", ""),
                   admin_failures_per_minute=float(env.get("FIREBREAK_ADMIN_FAILURES_PER_MINUTE", "10")),
                   review_deadline=float(env.get("FIREBREAK_REVIEW_DEADLINE", "5")),
                   policy=env.get("FIREBREAK_POLICY", str(DEFAULT_POLICY)),
                   ledger=env.get("FIREBREAK_LEDGER", ""),
                   etcd=tuple(x for x in env.get("FIREBREAK_ETCD", "").split(",") if x),
                   etcd_access=env.get("FIREBREAK_ETCD_ACCESS", ""),
                   credit_dir=env.get("FIREBREAK_CREDIT_DIR", ""))

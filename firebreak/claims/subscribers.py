"""The operator's webhook subscribers (FIREBREAK_WEBHOOKS=FILE), checked whole at start-up: a bad
file stops the service with every problem named (exit 2), not a notifier that fails later.

    public_url: https://status.example.com        # the page events link to (every site's door serves it)
    subscribers:
      - url: https://hooks.partner.example/firebreak
        secret_file: /etc/firebreak/webhooks/partner.secret   # mode 0600; relative: to this file
    # optional, with their defaults:
    horizon_hours: 24      # incidents going on, or that began or ended this recently, are announced
    timeout_s: 5           # one attempt, connection and answer
    lease_s: 60            # an attempt unfinished after this is taken over by another site's notifier
    retry_base_s: 10       # first wait after a failure, doubled each time, up to retry_max_s
    retry_max_s: 3600
    give_up_hours: 72
    poll_s: 2              # how often the notifier looks at the ledger

Secrets live in files of their own, readable by their owner only, like every secret here; the
file names no secret itself. A secret is read once, at start: restart the service to rotate it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firebreak.claims.webhooks import Retry
from firebreak.errors import InputError, Problem
from firebreak.inputs import load_yaml_model

MIN_SECRET = 16


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1)
    secret_file: str = Field(min_length=1)


class WebhooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_url: str = Field(min_length=1)
    subscribers: list[SubscriberIn]
    horizon_hours: float = Field(default=24.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0, le=30)
    lease_s: float = Field(default=60.0, gt=0)
    retry_base_s: float = Field(default=10.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    give_up_hours: float = Field(default=72.0, gt=0)
    poll_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _lease(self) -> "WebhooksFile":
        # Another site's notifier takes an unfinished attempt over after the lease: shorter than
        # an attempt may take, and a slow subscriber would get every event twice.
        if self.lease_s <= 2 * self.timeout_s:
            raise ValueError(f"lease_s ({self.lease_s:g}) must be more than twice timeout_s ({self.timeout_s:g}), "
                             "or a delivery still under way is sent again by another site")
        return self


@dataclass(frozen=True)
class Subscriber:
    url: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Webhooks:
    public_url: str
    subscribers: tuple[Subscriber, ...]
    retry: Retry
    horizon_s: float
    timeout_s: float
    poll_s: float

    def secret(self, url: str) -> bytes | None:
        return next((s.secret for s in self.subscribers if s.url == url), None)


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if parts.username or parts.password:
        return "a URL with a user or password in it; the signature is the subscriber's proof, put nothing else there"
    return None


def read_secret(path: Path) -> tuple[bytes | None, str | None]:
    """(the secret, None), or (None, why not and what to do)."""
    try:
        mode = path.stat().st_mode
        text = path.read_bytes().strip()
    except OSError as e:
        return None, f"cannot read {path} ({e.strerror}); create it with: umask 077; openssl rand -hex 32 > {path}"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None, f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
    if len(text) < MIN_SECRET:
        return None, f"{path} holds {len(text)} characters; a secret needs {MIN_SECRET} or more " \
                     f"(openssl rand -hex 32 > {path})"
    return text, None


def load_webhooks(path: str | Path) -> Webhooks:
    """The subscribers file, its secrets read; InputError with one problem per thing wrong."""
    path = Path(path)
    spec, lines = load_yaml_model(path, WebhooksFile, "FIREBREAK_WEBHOOKS " + str(path))
    label = str(path)
    problems: list[Problem] = []

    def where(*loc: object) -> str:
        line = lines.get(loc)
        name = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        return f"line {line}: {name}" if line else name

    if (why := _url_problem(spec.public_url)) is not None:
        problems.append(Problem(label, where("public_url"), why))
    subscribers, seen = [], set()
    for i, s in enumerate(spec.subscribers):
        if (why := _url_problem(s.url)) is not None:
            problems.append(Problem(label, where("subscribers", i, "url"), why))
        elif s.url in seen:
            problems.append(Problem(label, where("subscribers", i, "url"), f"{s.url} is listed twice; a subscriber is "
                                                                           "named by its URL"))
        seen.add(s.url)
        secret, why = read_secret((path.parent / s.secret_file) if not Path(s.secret_file).is_absolute()
                                  else Path(s.secret_file))
        if why is not None:
            problems.append(Problem(label, where("subscribers", i, "secret_file"), why))
        else:
            subscribers.append(Subscriber(s.url, secret))  # type: ignore[arg-type]
    if problems:
        raise InputError(problems)
    return Webhooks(spec.public_url.rstrip("/"), tuple(subscribers),
                    Retry(spec.lease_s, spec.retry_base_s, spec.retry_max_s, spec.give_up_hours * 3600),
                    spec.horizon_hours * 3600, spec.timeout_s, spec.poll_s)

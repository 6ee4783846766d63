"""Keys for partners' bulk filing systems: a partner that files for many people sends
`Authorization: Bearer <key>` with `POST /api/reports` and gets its own allowance (per partner,
not per address); everyone else gets the portal's per-source limits.

The keys file holds digests, never keys: one partner a line, `<name> sha256:<hex>`, `#` starts a
comment. It must be readable by its owner only (mode 0600 or stricter), like every secret here.
A key is 32 random bytes, so one SHA-256 is as good as a slow hash against guessing, and costs
nothing on the intake path (argon2 there would cost 0.3 s of a core per report). The lookup is by
digest, so how long it takes says nothing about the key."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from firebreak.errors import InputError, Problem

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
LINE = re.compile(r"^(\S+)\s+sha256:([0-9a-f]{64})$")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A new partner key (give it to the partner once; keep only `key_line(name, key)`)."""
    return "fbp_" + secrets.token_urlsafe(32)


def key_line(name: str, key: str) -> str:
    return f"{name} sha256:{key_digest(key)}"


@dataclass(frozen=True)
class PartnerKeys:
    by_digest: dict[str, str] = field(default_factory=dict)  # sha256 hex -> partner name

    def partner(self, key: str) -> str | None:
        """The partner a presented key belongs to, or None."""
        return self.by_digest.get(key_digest(key)) if key else None

    @classmethod
    def parse(cls, text: str, source: str) -> "PartnerKeys":
        problems, found = [], {}
        names: set[str] = set()
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = LINE.match(line)
            if m is None:
                problems.append(Problem(source, f"line {n}", "expected '<partner> sha256:<64 hex digits>' "
                                        "(make one with firebreak.claims.partners.key_line)", n))
                continue
            name, hexdigest = m.groups()
            if not NAME.match(name):
                problems.append(Problem(source, f"line {n}", f"partner name '{name}': use lowercase letters, "
                                        "digits, '.', '_' or '-'", n))
            elif name in names or hexdigest in found:
                problems.append(Problem(source, f"line {n}", f"partner '{name}' or its key appears twice", n))
            else:
                names.add(name)
                found[hexdigest] = name
        if problems:
            raise InputError(problems)
        return cls(found)

    @classmethod
    def load(cls, path: str | Path) -> "PartnerKeys":
        p = Path(path)
        try:
            mode = p.stat().st_mode
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(Problem(str(p), "", f"cannot read the partner keys file ({e.strerror}); "
                                     "set FIREBREAK_PARTNER_KEYS to a readable file or unset it")) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(Problem(str(p), "", f"readable by others (mode {stat.S_IMODE(mode):04o}); "
                                     f"run: chmod 600 {p}"))
        return cls.parse(text, str(p))


def add(name: str, path: Path) -> str:
    """A new key for partner `name`, its digest appended to the keys file (made 0600 if new);
    returns the key, which is shown once and kept nowhere."""
    if not NAME.match(name):
        raise InputError(Problem(str(path), "", f"partner name '{name}': use lowercase letters, digits, '.', '_' or "
                                 "'-', starting with a letter or digit"))
    existing = PartnerKeys.load(path) if path.exists() else PartnerKeys()
    if name in existing.by_digest.values():
        raise InputError(Problem(str(path), "", f"partner '{name}' already has a key; remove its line first to "
                                 "replace it"))
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(key_line(name, key) + "\n")
    return key


def main(argv: list[str] | None = None) -> int:
    """`python -m firebreak.claims.partners add NAME FILE`: prints the new key (once)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m firebreak.claims.partners")
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="make a key for a partner's bulk filing system")
    a.add_argument("name")
    a.add_argument("file", type=Path, help="the keys file the app reads (FIREBREAK_PARTNER_KEYS)")
    args = ap.parse_args(argv)
    try:
        print(add(args.name, args.file))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

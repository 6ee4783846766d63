"""`firebreak pki`: an estate's CAs, certificates and etcd users (firebreak/pki/ decides and
writes; this module reads the flags, checks every input before anything is written, and prints).
docs/PKI.md is the procedure."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from enum import Enum
from pathlib import Path

import typer

from firebreak.cli.base import OutputFormat, app, err, out
from firebreak.errors import FirebreakError, InputError, Problem

pki_app = typer.Typer(no_args_is_help=True, help="Certificates and etcd identities for real sites: two CAs (clients, "
                                                "etcd peers), every host's certificates, renewal, rotation, CA "
                                                "rollover, and etcd's users and roles (docs/PKI.md).")
app.add_typer(pki_app, name="pki")


class CAChoice(str, Enum):
    client = "client"
    peer = "peer"
    both = "both"


class RetireChoice(str, Enum):
    client = "client"
    peer = "peer"


_DIR = typer.Option(..., "--dir", metavar="DIR", help="The operator's PKI directory (mode 0700): the CA keys live "
                    "here and nowhere else.")
_INV = typer.Option(..., "--inventory", metavar="FILE", help="The inventory `firebreak deploy render` read.")
_OUT = typer.Option(..., "--out", metavar="DIR", help="The rendered tree (`deploy render --out DIR`): certificates "
                    "go to DIR/<host>/etc/firebreak/..., where the rendered files reference them.")
_SECRETS = typer.Option(None, "--secrets", metavar="FILE", help="The estate's secrets (etcd users' passwords). "
                        "Default: DIR/secrets.yml of --out.")
_DAYS = typer.Option(365, "--days", help="How long each new certificate is valid.")
_WITHIN = typer.Option(30, "--within", help="Renew what expires within this many days.")
_FMT = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs.")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _positive(flag: str, value: int, low: int = 1) -> None:
    if value < low:
        raise InputError(Problem(flag, "", f"{value} is below {low}"))


def _inventory(path: Path):
    from firebreak.deploy.inventory import load_inventory
    from firebreak.pki import plan

    inv = load_inventory(path)
    plan.check_inventory(inv)
    return inv


def _out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise InputError(Problem("--out", "", f"{path} exists and is not a directory"))
    return path


def _secrets(out_dir: Path | None, path: Path | None):
    from firebreak.deploy.secrets import check_private, load_secrets

    p = path or (out_dir / "secrets.yml" if out_dir else None)
    if p is None or not p.exists():
        raise InputError(Problem("--secrets", "", f"{p}: file not found; `firebreak deploy render` makes it (the "
                                                  "etcd users' passwords come from it)"))
    check_private(p)
    return load_secrets(p)


def _store(pki_dir: Path, out_dir: Path | None):
    from firebreak.pki.store import Store

    s = Store(pki_dir, out_dir)
    s.check_private_dir()
    return s


def _print(fmt: OutputFormat, doc: dict, lines: list[str]) -> None:
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@pki_app.command("init")
def pki_init(pki_dir: Path = _DIR,
             ca_days: int = typer.Option(3650, "--ca-days", help="How long each CA is valid."),
             name: str = typer.Option("Firebreak", "--name", help="The CAs' names begin with this."),
             fmt: OutputFormat = _FMT) -> None:
    """Make the client CA, the etcd peer CA and etcd's token keys (each only if missing)."""
    from firebreak.pki import store

    _positive("--ca-days", ca_days)
    o = store.init(_store(pki_dir, None), now=_now(), days=ca_days, name=name)
    _print(fmt, o.doc(), [f"made {p}" for p in o.written] + [f"kept {p}" for p in o.kept]
           + [f"Keep {pki_dir} on the operator's machine (mode 0700); its CA keys never go to a host."])


def _issue(inventory: Path, pki_dir: Path, out_dir: Path, secrets_file: Path | None, days: int, within: int,
           rotate: bool, fmt: OutputFormat, verb: str) -> None:
    from firebreak.pki import plan, store

    _positive("--days", days)
    _positive("--within", within, 0)
    inv = _inventory(inventory)
    out_dir = _out_dir(out_dir)
    secrets = _secrets(out_dir, secrets_file)
    root_pw = secrets.etcd.get(plan.ROOT_ROLE)
    if not root_pw:
        raise InputError(Problem("--secrets", "etcd.root", "no password for etcd's root; render again"))
    s = _store(pki_dir, out_dir)
    for kind in plan.CA_KINDS:
        s.signer(kind)  # missing CAs are refused before anything is written
    leaves = plan.leaves(inv)
    o = store.issue(s, leaves, now=_now(), days=days, within=dt.timedelta(days=within), rotate=rotate)
    d = store.distribute(s, plan.bundles(inv), [h.name for h in plan.token_hosts(inv)], root_pw)
    o.written += d.written
    lines = [f"{verb} {name}: {why}" for name, why in o.issued.items()]
    lines.append(f"{len(o.issued)} certificate(s) {verb}, {len(o.kept)} kept; {len(o.written)} file(s) written.")
    if o.written:
        lines.append(f"Install each host's files from {out_dir}/<host>/ (then `systemd-tmpfiles --create` sets "
                     "owners); running components pick them up on their next connection (docs/PKI.md).")
    _print(fmt, o.doc(), lines)


@pki_app.command("issue")
def pki_issue(inventory: Path = _INV, pki_dir: Path = _DIR, out_dir: Path = _OUT, secrets_file: Path = _SECRETS,
              days: int = _DAYS, fmt: OutputFormat = _FMT) -> None:
    """Every host's certificates that are missing, expired or no longer match the inventory, the CA
    bundles, etcd's token keys, and the operator's root identity."""
    _issue(inventory, pki_dir, out_dir, secrets_file, days, 0, False, fmt, "issued")


@pki_app.command("renew")
def pki_renew(inventory: Path = _INV, pki_dir: Path = _DIR, out_dir: Path = _OUT, secrets_file: Path = _SECRETS,
              days: int = _DAYS, within: int = _WITHIN, fmt: OutputFormat = _FMT) -> None:
    """As issue, and also every certificate expiring within --within days. A renewed certificate
    keeps its key: only the certificate file changes."""
    _issue(inventory, pki_dir, out_dir, secrets_file, days, within, False, fmt, "renewed")


@pki_app.command("check")
def pki_check(inventory: Path = _INV, pki_dir: Path = _DIR, out_dir: Path = _OUT, within: int = _WITHIN,
              fmt: OutputFormat = _FMT) -> None:
    """What is due (missing, expiring within --within days, mismatched, signed by a retiring CA).
    Exit 0 when nothing is, 1 when something is: for a timer or a monitoring check."""
    from firebreak.pki import plan, store, x509

    _positive("--within", within, 0)
    inv = _inventory(inventory)
    s = _store(pki_dir, _out_dir(out_dir))
    now, w = _now(), dt.timedelta(days=within)
    due = {leaf.name: why for leaf, why in store.survey(s, plan.leaves(inv), now=now, within=w) if why}
    for kind in plan.CA_KINDS:
        f = x509.facts(s.signer(kind).cert_pem, str(s.ca_cert(kind)))
        why = plan.ca_due(f.not_after, now=now, within=w, kind=kind)
        if why:
            due[str(s.ca_cert(kind))] = why
        if s.retiring(kind) is not None:
            due[str(s.ca_cert(kind, retiring=True))] = (f"a rollover of the {kind} CA is under way: re-sign "
                                                       f"(pki rotate), install, then `pki rotate --retire-ca {kind}`")
    _print(fmt, {"due": due}, [f"due {n}: {why}" for n, why in due.items()] or ["Nothing is due."])
    if due:
        raise typer.Exit(1)


@pki_app.command("rotate")
def pki_rotate(inventory: Path = _INV, pki_dir: Path = _DIR, out_dir: Path = _OUT, secrets_file: Path = _SECRETS,
               days: int = _DAYS,
               ca: CAChoice = typer.Option(None, "--ca", help="Begin a CA rollover: a new CA signs from now on, both "
                                           "are trusted; no certificate is re-signed yet (docs/PKI.md)."),
               retire_ca: RetireChoice = typer.Option(None, "--retire-ca", help="End a rollover: trust only the new "
                                                      "CA (refused while a certificate the old one signed remains)."),
               ca_days: int = typer.Option(3650, "--ca-days", help="With --ca: how long the new CA is valid."),
               name: str = typer.Option("Firebreak", "--name", help="With --ca: the new CA's name begins with this."),
               fmt: OutputFormat = _FMT) -> None:
    """Without --ca/--retire-ca: every certificate again, each with a new key, signed by the signing
    CA. With --ca: start a CA rollover. With --retire-ca: finish one."""
    from firebreak.pki import plan, store

    if ca is not None and retire_ca is not None:
        raise InputError(Problem("--ca", "", "give --ca or --retire-ca, not both (they are two steps of a rollover "
                                             "with an installation between them)"))
    if ca is None and retire_ca is None:
        _issue(inventory, pki_dir, out_dir, secrets_file, days, 0, True, fmt, "rotated")
        return
    _positive("--ca-days", ca_days)
    inv = _inventory(inventory)
    out_dir = _out_dir(out_dir)
    secrets = _secrets(out_dir, secrets_file)
    s = _store(pki_dir, out_dir)
    kinds = plan.CA_KINDS if ca == CAChoice.both else ((ca.value,) if ca is not None else (retire_ca.value,))
    for kind in kinds:
        s.signer(kind)
        if ca is not None and s.retiring(kind) is not None:
            raise InputError(Problem("--ca", "", f"a rollover of the {kind} CA is already under way; finish it "
                                                 f"with `firebreak pki rotate --retire-ca {kind}`"))
    o = store.Outcome()
    for kind in kinds:
        step = (store.begin_rollover(s, kind, now=_now(), days=ca_days, name=name) if ca is not None
                else store.retire(s, kind, plan.leaves(inv)))
        o.written += step.written
    o.written += store.distribute(s, plan.bundles(inv), [h.name for h in plan.token_hosts(inv)],
                                  secrets.etcd.get(plan.ROOT_ROLE)).written
    if ca is not None:
        nxt = [f"A new {', '.join(kinds)} CA signs from now on; every host's CA bundle now trusts the old and the new.",
               "Next: install the bundles on every host; restart etcd one member at a time (it reads its CA file "
               "only at start) and each agent one site at a time; then `firebreak pki rotate` (re-sign), install, "
               f"and finally `firebreak pki rotate --retire-ca {kinds[0]}` (docs/PKI.md)."]
    else:
        nxt = [f"The retiring {kinds[0]} CA is no longer trusted in the bundles: install them, then restart etcd one "
               "member at a time (docs/PKI.md)."]
    _print(fmt, o.doc(), [f"wrote {p}" for p in o.written] + nxt)


@pki_app.command("users")
def pki_users(inventory: Path = _INV, pki_dir: Path = _DIR, secrets_file: Path = typer.Option(
                  ..., "--secrets", metavar="FILE", help="The estate's secrets (deploy render's secrets.yml)."),
              endpoints: str = typer.Option(None, "--endpoints", metavar="URL,...", help="etcd's client URLs. "
                                            "Default: every member's, from the inventory."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change; change nothing."),
              fmt: OutputFormat = _FMT) -> None:
    """Make etcd's users and roles match control/keys.py role_grants (one user per role and per
    site), with the secrets' passwords, and turn authentication on. A second run changes nothing.
    Run on the operator's machine: it acts as etcd's root (--dir's operator/root/)."""
    from firebreak.control.etcd import EtcdAccess
    from firebreak.control.keys import PATRONI_NAMESPACE, Keys, PatroniKeys, role_grants
    from firebreak.deploy.render import etcd_client_urls
    from firebreak.errors import EtcdError
    from firebreak.pki import etcd_users

    inv = _inventory(inventory)
    secrets = _secrets(None, secrets_file)
    access = pki_dir / "operator" / etcd_users.ROOT / "access.json"
    if not access.exists():
        raise InputError(Problem("--dir", "", f"{access}: not found; `firebreak pki issue` writes the operator's "
                                              "root identity there"))
    root = EtcdAccess.from_file(access)
    urls = [u.strip() for u in endpoints.split(",") if u.strip()] if endpoints else \
        etcd_client_urls(inv, inv.sites[0].name)
    for u in urls:
        if not u.startswith("https://"):
            raise InputError(Problem("--endpoints", "", f"{u!r}: etcd is reached over TLS, https://HOST:PORT"))
    want = role_grants(Keys(), tuple(PatroniKeys.of(c.scope) for c in inv.clusters),
                       (PATRONI_NAMESPACE,) if inv.estate else (), sites=inv.names)
    try:
        todo, notes = asyncio.run(etcd_users.apply(urls, root, want, dict(secrets.etcd), dry_run=dry_run))
    except EtcdError as e:
        raise FirebreakError(f"{e}") from e
    lines = [("would " if dry_run else "") + d for d in etcd_users.describe(todo)] or \
        ["etcd's users and roles already match the grants; nothing changed."]
    _print(fmt, {"changes": etcd_users.describe(todo), "dry_run": dry_run, "notes": notes}, lines)
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)

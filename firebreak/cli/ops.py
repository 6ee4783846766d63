"""`firebreak ops`: ops actions against any surviving site's console.

Which consoles, in this order: `--console URL`; else the ops config file (`--config`,
$FIREBREAK_OPS_CONFIG, or ~/.config/firebreak/ops.yml), which lists every site's console and is
tried console by console until one answers, as patronictl reads its config; else the lab's. The
operator's token: `--token` ($FIREBREAK_OPS_TOKEN), `--token-file` ($FIREBREAK_OPS_TOKEN_FILE), the
config's `token_file`, else the lab's.

    # ~/.config/firebreak/ops.yml
    consoles:                       # every site's console; the first that answers acts
      gwangju: http://10.10.0.11:8090
      daejeon: http://10.20.0.11:8090
      busan: http://10.30.0.11:8090
    token_file: ~/.config/firebreak/token    # mode 0600: '<name>.<secret>'
    etcd: [https://10.10.0.11:2379, https://10.20.0.11:2379, https://10.30.0.11:2379]   # user-add
    etcd_access: /etc/firebreak/etcd/ops/access.json                                   # user-add
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer
from pydantic import BaseModel, ConfigDict, Field

from firebreak.cli.base import OutputFormat, app, confirm, out, read_estate
from firebreak.control.keys import PREFIX
from firebreak.errors import FirebreakError, InputError, Problem
from firebreak.inputs import bad_name, load_yaml_model, suggest

CONFIG_ENV = "FIREBREAK_OPS_CONFIG"
TOKEN_ENV = "FIREBREAK_OPS_TOKEN"
TOKEN_FILE_ENV = "FIREBREAK_OPS_TOKEN_FILE"

ops_app = typer.Typer(no_args_is_help=True, help=(
    "Ops actions against any site's console: the ops config's consoles (--config, $FIREBREAK_OPS_CONFIG or "
    "~/.config/firebreak/ops.yml), one named with --console, or the lab's; the next is tried when one does not "
    "answer. Token: --token ($FIREBREAK_OPS_TOKEN), --token-file ($FIREBREAK_OPS_TOKEN_FILE) or the config's "
    "token_file."))
app.add_typer(ops_app, name="ops")


class OpsConfig(BaseModel):
    """The ops config file: every site's console, and where the operator's credentials are."""
    model_config = ConfigDict(extra="forbid", strict=True)

    consoles: dict[str, str] = Field(min_length=1, description="site -> console URL, tried in this order")
    token_file: str | None = Field(default=None, description="a file holding the operator's token (mode 0600)")
    etcd: list[str] = Field(default_factory=list, description="etcd client URLs, for user-add")
    etcd_access: str | None = Field(default=None, description="the ops role's etcd access file, for user-add")


_state: dict = {"config": None}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "firebreak" / "ops.yml"


@ops_app.callback()
def _ops_options(config: Optional[Path] = typer.Option(
        None, "--config", "-c", metavar="FILE", envvar=CONFIG_ENV,
        help="Ops config: every site's console, the token file (default: ~/.config/firebreak/ops.yml).")) -> None:
    _state["config"] = config


def load_ops_config(path: Path | None = None) -> tuple[OpsConfig, Path] | None:
    """The ops config named (--config or $FIREBREAK_OPS_CONFIG: it must exist), else the default
    file if there is one, else None. A bad file is refused with its field named (exit 2)."""
    named = path or _state.get("config")
    path = Path(named).expanduser() if named else default_config_path()
    if not named and not path.exists():
        return None
    cfg, _ = load_yaml_model(path, OpsConfig, str(path))
    for site, url in cfg.consoles.items():
        if bad_name(site):
            raise InputError(Problem(str(path), f"consoles.{site}", f"site name {bad_name(site)}"))
        if not url.startswith(("http://", "https://")):
            raise InputError(Problem(str(path), f"consoles.{site}", f"{url!r} is not an http(s) URL, such as "
                                                                   "http://10.10.0.11:8090"))
    return cfg, path


def _consoles(console: Optional[str], site: Optional[str]) -> list[tuple[str, str]]:
    """(name, URL) of every console to try, in order."""
    if console:
        return [(console, console.rstrip("/"))]
    loaded = load_ops_config()
    if loaded is not None:
        cfg, path = loaded
        found = [(n, u.rstrip("/")) for n, u in cfg.consoles.items()]
        if site:
            found = [c for c in found if c[0] == site]
            if not found:
                raise InputError(Problem("--site", "", f"no console for site '{site}' in {path}"
                                                       f"{suggest(site, cfg.consoles)}"))
        return found
    from firebreak.lab import lab

    st = lab.status()
    found = [(n, s["console"]) for n, s in st["sites"].items() if s.get("console") and s["state"] == "up"]
    if site:
        found = [c for c in found if c[0] == site]
        if not found:
            raise InputError(Problem("--site", "", f"no running console in site '{site}'"))
    if not found:
        raise InputError(Problem("--site", "", "no site console is running; start the lab with agents, or list "
                                               f"your sites' consoles in {default_config_path()} (or "
                                               f"${CONFIG_ENV}, or pass --console URL)"))
    return found


def read_token_file(path: Path, option: str) -> str:
    """An operator's token from a file only its owner may read (it acts as that operator)."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except OSError as e:
        raise InputError(Problem(option, "", f"{path}: cannot read the token file ({e.strerror})")) from None
    if mode & 0o077:
        raise InputError(Problem(option, "", f"{path}: mode {mode:04o} lets other users read your token; "
                                             f"`chmod 600 {path}`"))
    if not text or "." not in text.splitlines()[0]:
        raise InputError(Problem(option, "", f"{path}: expected a token '<name>.<secret>' on its first line"))
    return text.splitlines()[0].strip()


def _token(token: Optional[str], token_file: Optional[Path] = None) -> str:
    if token:
        return token
    if token_file:
        return read_token_file(token_file, "--token-file")
    loaded = load_ops_config()
    if loaded is not None and loaded[0].token_file:
        return read_token_file(Path(loaded[0].token_file), f"{loaded[1]}: token_file")
    from firebreak.lab.state import lab_home, load_secrets

    try:
        return load_secrets(lab_home()).ops_token
    except (FileNotFoundError, TypeError):
        raise InputError(Problem("--token", "", f"no operator token: pass --token or --token-file, set "
                                                f"${TOKEN_ENV}, or name a token_file in {default_config_path()}"))


def _ops(action: str, body: dict, console: Optional[str], site: Optional[str], token: Optional[str],
         fmt: OutputFormat = OutputFormat.text, quiet: bool = False, token_file: Optional[Path] = None) -> None:
    import httpx

    consoles = _consoles(console, site)
    bearer = _token(token, token_file)
    errors = []
    for name, url in consoles:
        try:
            r = httpx.post(f"{url}/api/actions/{action}", json=body, timeout=60,
                           headers={"Authorization": f"Bearer {bearer}"})
        except httpx.HTTPError as e:
            errors.append(f"{name}: {e!r}")
            continue  # another site's console will do: ops must work from any surviving site
        doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"error": r.text}
        if r.status_code == 200:
            result = {k: v for k, v in doc.items() if k not in ("ok", "action")}
            if quiet:
                return
            if fmt == OutputFormat.json:
                sys.stdout.write(json.dumps({"action": action, "via": name, "result": result}) + "\n")
            else:
                out.print(f"[green]{action}[/] via {name}: " +
                          (", ".join(f"{k} {v}" for k, v in result.items()) or "done"))
            return
        if r.status_code in (401, 403, 404, 409, 422):
            raise FirebreakError(f"{action} refused by {name}: {doc.get('error')}")
        errors.append(f"{name}: HTTP {r.status_code} {doc.get('error')}")
    raise FirebreakError(f"{action} failed everywhere: " + "; ".join(errors))


T = TypeVar("T")


def _first_answering(consoles: list[tuple[str, str]], read: Callable[[str], T]) -> tuple[str, str, T]:
    """The first console whose read succeeds, and what it read; the next is tried when one fails."""
    errors = []
    for name, url in consoles:
        try:
            return name, url, read(url)
        except FirebreakError as e:
            errors.append(f"{name}: {e}")
    raise FirebreakError("no console answered: " + "; ".join(errors))


_console_opt = typer.Option(None, "--console", envvar="FIREBREAK_OPS_CONSOLE",
                            help="One console URL (default: the ops config's consoles, else the lab's).")
_site_opt = typer.Option(None, "--site", help="Use this site's console (from the ops config, or the lab's).")
_token_opt = typer.Option(None, "--token", envvar=TOKEN_ENV, help="Operator token '<name>.<secret>'.")
_token_file_opt = typer.Option(None, "--token-file", metavar="FILE", envvar=TOKEN_FILE_ENV,
                               help="A file (mode 0600) holding the operator token.")
_format_opt = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs.")
_yes_opt = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")


@ops_app.command("status")
def ops_status(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
               fmt: OutputFormat = _format_opt) -> None:
    """The control plane's view from one console: sites, members, primary, routing, incidents."""
    import httpx

    tried = []
    for name, url in _consoles(console, site):
        try:
            doc = httpx.get(url + "/api/status", timeout=5).json()
        except (httpx.HTTPError, ValueError) as e:
            tried.append(f"{name}: {e!r}")
            continue
        if fmt == OutputFormat.json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            print_status(doc)
        return
    raise FirebreakError("no console answered (" + "; ".join(tried) + "); check `firebreak lab status`, the ops "
                         "config's consoles, or pass --console URL")


def status_rows(doc: dict) -> list[dict]:
    """One row per site, like `patronictl list`: member, role, state, and the control plane's verdict."""
    cluster = doc.get("cluster") or {}
    members = cluster.get("members") or {}
    leader, sync = cluster.get("leader"), set(cluster.get("sync_standbys") or [])
    rows = []
    sites = doc.get("sites") or {}
    for site in sorted(set(sites) | {doc.get("site")} - {None}):
        v = sites.get(site, {})
        member = next((m for m in members if m == site or m.endswith("-" + site) or m.startswith(site)), None)
        m = members.get(member, {}) if member else {}
        role = "Leader" if member and member == leader else "Sync Standby" if member in sync else \
            ("Replica" if member else "-")
        verdict = "dead" if v.get("dead") else ("suspected" if v.get("votes") else "alive")
        rows.append({"site": site, "member": member or "-", "role": role, "state": m.get("state") or "-",
                     "verdict": verdict + (f" ({v['reason']})" if v.get("reason") and verdict != "alive" else ""),
                     "drained": "yes" if v.get("drained") else "", "this": site == doc.get("site")})
    return rows


def print_status(doc: dict) -> None:
    from rich.table import Table

    flags = [f"coordinator {doc.get('coordinator') or 'none'}", "frozen" if doc.get("frozen") else "",
             f"failovers {doc.get('failovers', 0)}"]
    table = Table(title=f"Firebreak control plane, seen from {doc.get('site')} "
                        f"(primary: {doc.get('primary') or 'none'}; {', '.join(f for f in flags if f)})")
    for col in ("Site", "Member", "Role", "State", "Verdict", "Drained"):
        table.add_column(col, no_wrap=True)
    for r in status_rows(doc):
        table.add_row(r["site"] + (" *" if r["this"] else ""), r["member"], r["role"], r["state"], r["verdict"],
                      r["drained"])
    out.print(table)
    clusters = doc.get("clusters") or {}
    if len(clusters) > 1:
        # An estate: one line per cluster, each site's role in it.
        for name, c in clusters.items():
            roles = ", ".join(f"{m.get('site') or n} {('primary' if n == c.get('leader') else 'sync standby' if n in (c.get('sync_standbys') or []) else m.get('role'))}"
                              for n, m in (c.get("members") or {}).items())
            out.print(f"  [bold]{name}[/]: {roles or 'no members'}")
    if (doc.get("cluster") or {}).get("error"):
        out.print(f"[red]etcd: {doc['cluster']['error']}[/]")
    for inc in doc.get("incidents") or []:
        out.print(f"[red]incident[/]: {inc.get('site')} {inc.get('kind')} since {inc.get('start'):.0f} "
                  f"{inc.get('failover') or ''}")
    if doc.get("last_decision"):
        out.print(f"[dim]last decision: {doc['last_decision']}[/]")


@ops_app.command("freeze")
def ops_freeze(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
               token: Optional[str] = _token_opt, token_file: Optional[Path] = _token_file_opt,
               fmt: OutputFormat = _format_opt) -> None:
    """Stop automatic failover (Patroni's own timers still apply)."""
    _ops("freeze", {}, console, site, token, fmt, token_file=token_file)


@ops_app.command("unfreeze")
def ops_unfreeze(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                 token: Optional[str] = _token_opt, token_file: Optional[Path] = _token_file_opt,
                 fmt: OutputFormat = _format_opt) -> None:
    """Resume automatic failover."""
    _ops("unfreeze", {}, console, site, token, fmt, token_file=token_file)


@ops_app.command("switchover")
def ops_switchover(to: str = typer.Argument(..., help="Site to move the primary to."),
                   cluster: Optional[str] = typer.Option(None, "--cluster", help="The database cluster (its Patroni "
                                                         "scope, the topology's database name); the first if omitted."),
                   console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                   token: Optional[str] = _token_opt, token_file: Optional[Path] = _token_file_opt,
                   yes: bool = _yes_opt, fmt: OutputFormat = _format_opt) -> None:
    """Move a cluster's primary to another site, cleanly."""
    confirm(f"Move {cluster + chr(39) + 's' if cluster else 'the'} primary to {to}?", yes)
    _ops("switchover", {"to": to, **({"cluster": cluster} if cluster else {})}, console, site, token, fmt,
         token_file=token_file)


@ops_app.command("rebalance")
def ops_rebalance(against: Path = typer.Option(..., "--against", metavar="FILE",
                                               help="The topology that says where each database's primary belongs."),
                  dry_run: bool = typer.Option(False, "--dry-run", help="Show the switchovers; make none."),
                  console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                  token: Optional[str] = _token_opt, token_file: Optional[Path] = _token_file_opt,
                  yes: bool = _yes_opt, fmt: OutputFormat = _format_opt) -> None:
    """Move primaries back where the topology puts them, after failovers left them elsewhere.

    One switchover at a time, each a clean handover (no write lost), only for clusters whose
    declared site runs a living member; the others are named with the reason. A member that came
    back as an asynchronous replica is made a synchronous standby first (Patroni's
    synchronous_node_count raised for the time of the move), so it holds every acknowledged write."""
    from firebreak.readiness.live import live_topology, rebalance_plan
    from firebreak.topology import load_topology

    declared = load_topology(against)
    bearer = _token(token, token_file)  # before anything moves: a missing token is bad input, exit 2
    name, url, estate = _first_answering(_consoles(console, site), lambda u: read_estate(u, "--console"))
    plan = rebalance_plan(declared, live_topology(estate, declared, label=url))
    ready = [m for m in plan if m["ready"]]
    if fmt == OutputFormat.text:
        if not plan:
            out.print(f"[green]Balanced:[/] every primary is where {against} puts it.")
        for m in plan:
            out.print(f"  {m['cluster']}: {m['from'] or 'no primary'} -> {m['to']}"
                      + ("" if m["ready"] else f"  [yellow]not yet: {m['why']}[/]"))
    moved, refused = [], []
    if ready and not dry_run:
        confirm(f"Switch over {len(ready)} cluster(s) to the sites {against} names?", yes)
        for m in ready:
            try:
                _ops("switchover", {"to": m["to"], "cluster": m["cluster"], "make_sync": True}, url, None, bearer,
                     fmt, quiet=fmt == OutputFormat.json)
                moved.append(m["cluster"])
            except FirebreakError as e:  # one cluster refusing stops none of the others
                refused.append({"cluster": m["cluster"], "error": str(e)})
                if fmt == OutputFormat.text:
                    out.print(f"  [red]{m['cluster']}: {e}[/]")
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps({"action": "rebalance", "via": name, "plan": plan, "moved": moved,
                                     "refused": refused, "dry_run": dry_run}) + "\n")
    if refused:
        raise typer.Exit(1)


@ops_app.command("evacuate")
def ops_evacuate(target: str = typer.Argument(..., metavar="SITE"), console: Optional[str] = _console_opt,
                 site: Optional[str] = _site_opt, token: Optional[str] = _token_opt,
                 token_file: Optional[Path] = _token_file_opt, yes: bool = _yes_opt,
                 fmt: OutputFormat = _format_opt) -> None:
    """Drain a site's traffic and move the primary away from it."""
    confirm(f"Drain {target}'s traffic and move the primary away from it?", yes)
    _ops("evacuate", {"site": target}, console, site, token, fmt, token_file=token_file)


@ops_app.command("restore")
def ops_restore(target: str = typer.Argument(..., metavar="SITE"), console: Optional[str] = _console_opt,
                site: Optional[str] = _site_opt, token: Optional[str] = _token_opt,
                token_file: Optional[Path] = _token_file_opt,
                fmt: OutputFormat = _format_opt) -> None:
    """Send traffic to an evacuated site again."""
    _ops("restore", {"site": target}, console, site, token, fmt, token_file=token_file)


@ops_app.command("release")
def ops_release(version: str = typer.Argument(...), notes: str = typer.Option("", "--notes"),
                console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                token: Optional[str] = _token_opt,
                token_file: Optional[Path] = _token_file_opt, fmt: OutputFormat = _format_opt) -> None:
    """Put a release into the release store (replicated to every site)."""
    _ops("release", {"version": version, "notes": notes}, console, site, token, fmt, token_file=token_file)


@ops_app.command("deploy")
def ops_deploy(version: str = typer.Argument(...), console: Optional[str] = _console_opt,
               site: Optional[str] = _site_opt, token: Optional[str] = _token_opt,
               token_file: Optional[Path] = _token_file_opt, yes: bool = _yes_opt,
               fmt: OutputFormat = _format_opt) -> None:
    """Roll a release of the reference service out to every living site."""
    confirm(f"Roll release {version} out to every living site?", yes)
    _ops("deploy", {"version": version}, console, site, token, fmt, token_file=token_file)


@ops_app.command("user-add")
def ops_user_add(name: str = typer.Argument(...), role: str = typer.Option("operator", "--role"),
                 etcd: list[str] = typer.Option(None, "--etcd", help="etcd client URL(s); default: the ops "
                                                "config's etcd, else the lab's."),
                 etcd_access: Optional[Path] = typer.Option(
                     None, "--etcd-access", help="a locked etcd: an access file (JSON: ca, cert, key, user, "
                                                 "password_file); default: the ops config's etcd_access, else the "
                                                 "lab's ops role"),
                 prefix: str = typer.Option(PREFIX, "--prefix")) -> None:
    """Create an operator and print its token once (only an argon2 hash is stored)."""
    import asyncio

    from firebreak.control.auth import ROLES, add_operator, check_name
    from firebreak.control.keys import Keys
    from firebreak.control.etcd import OPEN, Etcd, EtcdAccess, EtcdError

    problem = check_name(name)
    if problem:
        raise InputError(Problem("NAME", "", problem))
    if role not in ROLES:
        raise InputError(Problem("--role", "", f"must be one of {', '.join(ROLES)}"))
    loaded = load_ops_config() if not etcd else None
    if not etcd and loaded is not None and loaded[0].etcd:
        etcd = loaded[0].etcd
        etcd_access = etcd_access or (Path(loaded[0].etcd_access).expanduser() if loaded[0].etcd_access else None)
    if not etcd:
        from firebreak.lab import lab
        st = lab.status()
        etcd = st["etcd_endpoints"]
        etcd_access = etcd_access or Path(st["etcd_access"]["roles"]["ops"]["access_file"])
    try:
        access = EtcdAccess.from_file(etcd_access) if etcd_access else OPEN
    except EtcdError as e:  # a file the person named: bad input, not an etcd outage
        raise InputError(Problem("--etcd-access", "", str(e))) from None

    async def go() -> str:
        client = Etcd(list(etcd), timeout=3, access=access)
        try:
            return await add_operator(client, Keys(prefix), name, role)
        finally:
            await client.close()
    out.print(f"operator {name} ({role}) created. Token, shown only now:")
    sys.stdout.write(asyncio.run(go()) + "\n")



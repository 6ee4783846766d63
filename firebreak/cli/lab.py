"""`firebreak lab`: three real sites on one machine."""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from firebreak.cli.base import OutputFormat, app, err, out, progress_printer


lab_app = typer.Typer(no_args_is_help=True, help="Three real sites on one machine: etcd, PostgreSQL under "
                                                  "Patroni, the reference service and the site agents.")
app.add_typer(lab_app, name="lab")


class NetMode(str, Enum):
    auto = "auto"
    loopback = "loopback"
    netns = "netns"


class Power(str, Enum):
    off = "off"
    on = "on"


class Replication(str, Enum):
    sync = "sync"
    quorum = "quorum"


class DoorKind(str, Enum):
    caddy = "caddy"
    haproxy = "haproxy"


@lab_app.command("up")
def lab_up(
    topology: Optional[Path] = typer.Option(None, "--topology", help="Topology file (default examples/firebreak-lab.yaml)."),
    net: NetMode = typer.Option(NetMode.auto, "--net", help="netns (default as root) or loopback addresses."),
    no_agents: bool = typer.Option(False, "--no-agents", help="Patroni alone: no Firebreak site agents."),
    replication: Optional[Replication] = typer.Option(
        None, "--replication", help="The default lab's cluster: sync (one named synchronous standby; the default) "
                                    "or quorum (Patroni's quorum commit: ANY 1 of the other sites' standbys). "
                                    "A --topology declares it per database instead."),
    door: DoorKind = typer.Option(DoorKind.haproxy, "--door", help="Each site's front door: haproxy (the default: a "
                                                                  "quarter of Caddy's CPU per request) or caddy."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json: the status once up."),
) -> None:
    """Start the lab: one etcd member, one PostgreSQL under Patroni and one app per site."""
    from firebreak.lab import lab

    t0 = time.monotonic()
    try:
        console = err if fmt == OutputFormat.json else out  # stdout carries only the JSON
        with console.status("starting the lab…"):
            lab.up(topology, net.value, agents=not no_agents, progress=progress_printer(console),
                   replication=replication.value if replication else None, door=door.value)
    except lab.AlreadyUp as e:
        out.print(str(e))
        raise typer.Exit(0)
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps({"seconds": round(time.monotonic() - t0, 1), **lab.status()}, indent=2) + "\n")
        return
    out.print(f"[bold green]lab up[/] in {time.monotonic() - t0:.1f} s")
    _print_status(lab.status())


@lab_app.command("down")
def lab_down(purge: bool = typer.Option(False, "--purge", help="Also delete data and logs.")) -> None:
    """Stop every lab process (by PID; paused ones continued first), remove its namespaces and firewall rules."""
    from firebreak.lab import lab

    with out.status("stopping the lab…"):
        had = lab.down(purge=purge, progress=progress_printer())
    out.print("lab down" + (" and purged" if purge else "") if had else "no lab was running" +
              ("; data purged" if purge else ""))


@lab_app.command("status")
def lab_status(fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs."),
               as_json: bool = typer.Option(False, "--json", help="Same as --format json (kept: other tools use it).")) -> None:
    """Sites, components and the current primary."""
    from firebreak.lab import lab

    st = lab.status()
    if as_json or fmt == OutputFormat.json:
        sys.stdout.write(json.dumps(st, indent=2) + "\n")
    else:
        _print_status(st)


def _print_status(st: dict) -> None:
    from rich.table import Table

    health = "[green]healthy[/]" if st.get("healthy") else "[yellow]not healthy[/]"
    if st.get("estate"):
        _print_estate(st, health)
        return
    table = Table(title=f"Firebreak lab ({st['net']} mode, primary: {st['primary'] or 'none'}, {health})")
    for col in ("site", "power", "address", "postgres", "door", "app", "console"):
        table.add_column(col, no_wrap=True)
    style = {"primary": "bold green", "sync_standby": "green", "quorum_standby": "green", "replica": "cyan", "down": "red"}
    for name, s in st["sites"].items():
        role = s["postgres"]["role"]
        power = "[green]up[/]" if s["state"] == "up" else f"[red]off[/] ({s['silenced']})"
        if s.get("isolated"):
            power += " [red]isolated[/]"
        table.add_row(name, power, s["address"], f"[{style[role]}]{role}[/]", f":{s['door'].rsplit(':', 1)[1]}",
                      f":{s['app'].rsplit(':', 1)[1]}",
                      f":{s['console'].rsplit(':', 1)[1]}" if s.get("console") else "—")
    out.print(table)
    out.print("[dim]etcd :12379 (TLS, a user per role), Patroni :18008, PostgreSQL :15432 on each site's address; "
              f"web clients use the doors ({'HAProxy' if st.get('door_kind') == 'haproxy' else 'Caddy'} :18000), "
              "database clients the database doors "
              "(HAProxy :15433 read-write, :15434 read-only); `firebreak lab status --json` has every URL, "
              "the DSNs and where etcd's credentials are[/]")


def _print_estate(st: dict, health: str) -> None:
    """A lab built from a topology: each cluster's member role in each site, and the services."""
    from rich.table import Table

    style = {"primary": "bold green", "sync_standby": "green", "quorum_standby": "green", "replica": "cyan", "down": "red"}
    table = Table(title=f"Firebreak lab: {len(st['clusters'])} clusters, {len(st['services'])} services "
                        f"({st['net']} mode, {health})")
    for col in ("site", "power", "address", *st["clusters"], "console"):
        table.add_column(col, no_wrap=True)
    for name, s in st["sites"].items():
        power = "[green]up[/]" if s["state"] == "up" else f"[red]off[/] ({s['silenced']})"
        if s.get("isolated"):
            power += " [red]isolated[/]"
        roles = []
        for c in st["clusters"].values():
            role = c["members"].get(name)
            roles.append(f"[{style[role]}]{role}[/]" if role else "—")
        table.add_row(name, power, s["address"], *roles, f":{s['console'].rsplit(':', 1)[1]}" if s.get("console") else "—")
    out.print(table)
    for name, svc in st["services"].items():
        out.print(f"  {name}: runs in {', '.join(svc['sites'])}; through any door, e.g. {next(iter(svc['urls'].values()))}")
    out.print("[dim]each cluster that declares doors has a database door pair 100 ports above the previous one's (15433/15434 first); "
              "`firebreak lab status --json` has every cluster's DSNs, door DSNs and Patroni APIs[/]")


@lab_app.command("power")
def lab_power(action: Power = typer.Argument(..., help="off: a power cut; on: bring the site back."),
              site: str = typer.Argument(..., help="Site name.")) -> None:
    """Cut a site's power (every process killed at once, its address silent) or restore it."""
    from firebreak.lab import lab

    if action == Power.off:
        r = lab.power_off(site)
        out.print(f"{site}: power cut, {r.get('killed', 0)} processes killed, address {r['silenced']}"
                  if r["changed"] else f"{site} is already off")
    else:
        with out.status(f"powering {site} on…"):
            r = lab.power_on(site)
        out.print(f"{site}: power on, rejoining" if r["changed"] else f"{site} is already on")


@lab_app.command("cut")
def lab_cut(a: str = typer.Argument(..., help="A site at one end of the link."),
            b: str = typer.Argument(..., help="The site at the other end.")) -> None:
    """Cut the link between two sites, both ways silent; every other link and every process stays up."""
    from firebreak.lab import lab

    r = lab.cut(a, b)
    out.print(f"{a} ↮ {b}: link cut ({r['cut']}); `firebreak lab uncut {a} {b}` or `firebreak lab heal {a}` "
              "restores it")


@lab_app.command("uncut")
def lab_uncut(a: str = typer.Argument(..., help="A site at one end of the link."),
              b: str = typer.Argument(..., help="The site at the other end.")) -> None:
    """Restore a link cut by `lab cut` (either order), leaving every other fault as it is."""
    from firebreak.lab import lab

    r = lab.uncut(a, b)
    out.print(f"{a} ↔ {b}: link restored" if r["changed"] else f"{a} ↔ {b}: the link was not cut; rules cleared anyway")


@lab_app.command("pause")
def lab_pause(site: str = typer.Argument(..., help="Site name."),
              component: Optional[str] = typer.Option(None, "--component",
                                                      help="postgres: PostgreSQL alone (a storage hang); etcd: the "
                                                           "site's etcd member alone; default every process of the site.")) -> None:
    """Stop a site's processes with SIGSTOP (a hung host) until `lab resume SITE`."""
    from firebreak.lab import lab

    r = lab.pause(site, component)
    out.print(f"{site}: {r['paused']} processes paused ({r['component']}); `firebreak lab resume {site}` continues them")


@lab_app.command("resume")
def lab_resume(site: str = typer.Argument(..., help="Site name.")) -> None:
    """Continue (SIGCONT) the processes a pause of the site stopped."""
    from firebreak.lab import lab

    r = lab.resume(site)
    out.print(f"{site}: {r['resumed']} processes continued" if r["changed"] else f"{site}: nothing was paused")


@lab_app.command("logs")
def lab_logs(site: str = typer.Argument(...), component: Optional[str] = typer.Argument(None),
             lines: int = typer.Option(50, "--lines", "-n", min=1)) -> None:
    """Show the last lines of a site's logs (etcd, patroni, postgres, app, door, agent)."""
    from firebreak.lab import lab

    paths = lab.log_paths(site, component)
    if not paths:
        out.print(f"no logs for {site}" + (f" {component}" if component else ""))
    for p in paths:
        out.rule(str(p))
        text = p.read_text(errors="replace").splitlines()[-lines:]
        sys.stdout.write("\n".join(text) + "\n")




@lab_app.command("heal")
def lab_heal(target: str = typer.Argument("all", metavar="[SITE|all]", help="A site, or all (default)."),
             fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json.")) -> None:
    """Undo whatever fault is left: paused processes continued, links restored (isolated, degraded or
    cut, every cut with the site at either end), power back on, dead components restarted."""
    from firebreak.lab import lab

    sites = list(lab.status()["sites"]) if target == "all" else [target]
    done = {}
    for site in sites:
        with out.status(f"healing {site}…"):
            done[site] = lab.recover(site)
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps({"healed": done}) + "\n")
        return
    for site, what in done.items():
        out.print(f"{site}: " + (", ".join(what) if what else "nothing to heal"))

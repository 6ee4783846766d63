"""The one `firebreak` command. Each subcommand is a thin shell over a package's pure core."""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from firebreak.errors import FirebreakError, InputError, Problem

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make losing a whole site a non-event, provably.")
out = Console()
err = Console(stderr=True)


class Format(str, Enum):
    text = "text"
    json = "json"
    md = "md"
    html = "html"


@app.command()
def check(
    file: Path = typer.Argument(..., help="Topology YAML file."),
    pairs: bool = typer.Option(False, "--pairs", help="Also analyse the loss of every pair of sites."),
    fmt: Format = typer.Option(Format.text, "--format", help="text for people, json for programs, md or html to share."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
) -> None:
    """What losing each site does to a declared topology, ops tools included.

    Exit 0 when no scenario has a finding of kind down, unrecoverable, quorum-lost or data-loss;
    1 when one does; 2 on bad input.
    """
    from firebreak.readiness import analyse_all
    from firebreak.readiness import render
    from firebreak.topology import load_topology

    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    report = analyse_all(load_topology(file), pairs=pairs)
    if fmt == Format.text:
        if output is None:
            render.print_text(report, out)
        else:
            with output.open("w", encoding="utf-8") as fh:
                render.print_text(report, Console(file=fh, width=120, color_system=None))
    else:
        text = {Format.json: render.to_json, Format.md: render.to_markdown, Format.html: render.to_html}[fmt](report)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    if output is not None:
        err.print(f"wrote {output}")
    raise typer.Exit(1 if report.failing else 0)


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


def _progress_printer():
    t0 = time.monotonic()

    def show(msg: str) -> None:
        out.print(f"[dim]{time.monotonic() - t0:5.1f}s[/]  {msg}")
    return show


@lab_app.command("up")
def lab_up(
    topology: Optional[Path] = typer.Option(None, "--topology", help="Topology file (default examples/firebreak-lab.yaml)."),
    net: NetMode = typer.Option(NetMode.auto, "--net", help="netns (default as root) or loopback addresses."),
    no_agents: bool = typer.Option(False, "--no-agents", help="Patroni alone: no Firebreak site agents."),
) -> None:
    """Start the lab: one etcd member, one PostgreSQL under Patroni and one app per site."""
    from firebreak.lab import lab

    t0 = time.monotonic()
    try:
        with out.status("starting the lab…"):
            lab.up(topology, net.value, agents=not no_agents, progress=_progress_printer())
    except lab.AlreadyUp as e:
        out.print(str(e))
        raise typer.Exit(0)
    out.print(f"[bold green]lab up[/] in {time.monotonic() - t0:.1f} s")
    _print_status(lab.status())


@lab_app.command("down")
def lab_down(purge: bool = typer.Option(False, "--purge", help="Also delete data and logs.")) -> None:
    """Stop every lab process (by PID), remove its namespaces and firewall rules."""
    from firebreak.lab import lab

    with out.status("stopping the lab…"):
        had = lab.down(purge=purge, progress=_progress_printer())
    out.print("lab down" + (" and purged" if purge else "") if had else "no lab was running" +
              ("; data purged" if purge else ""))


@lab_app.command("status")
def lab_status(as_json: bool = typer.Option(False, "--json", help="Machine-readable.")) -> None:
    """Sites, components and the current primary."""
    from firebreak.lab import lab

    st = lab.status()
    if as_json:
        sys.stdout.write(json.dumps(st, indent=2) + "\n")
    else:
        _print_status(st)


def _print_status(st: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Firebreak lab ({st['net']} mode, primary: {st['primary'] or 'none'})")
    for col in ("site", "power", "address", "postgres", "etcd", "patroni", "app"):
        table.add_column(col)
    style = {"primary": "bold green", "sync_standby": "green", "replica": "cyan", "down": "red"}
    for name, s in st["sites"].items():
        role = s["postgres"]["role"]
        table.add_row(name, "[green]up[/]" if s["state"] == "up" else f"[red]off[/] ({s['silenced']})", s["address"],
                      f"[{style[role]}]{role}[/]", s["etcd"], s["patroni"], s["app"])
    out.print(table)


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


@lab_app.command("logs")
def lab_logs(site: str = typer.Argument(...), component: Optional[str] = typer.Argument(None),
             lines: int = typer.Option(50, "--lines", "-n", min=1)) -> None:
    """Show the last lines of a site's logs (etcd, patroni, postgres, app, agent)."""
    from firebreak.lab import lab

    paths = lab.log_paths(site, component)
    if not paths:
        out.print(f"no logs for {site}" + (f" {component}" if component else ""))
    for p in paths:
        out.rule(str(p))
        text = p.read_text(errors="replace").splitlines()[-lines:]
        sys.stdout.write("\n".join(text) + "\n")


drill_app = typer.Typer(no_args_is_help=True, help="Faults under load on a running lab, judged from a recorded "
                                                    "history. Exit 0 when the drill passes, 1 when it fails.")
app.add_typer(drill_app, name="drill")


class Baseline(str, Enum):
    firebreak = "firebreak"
    patroni = "patroni"


def _run_drill(scenario, report: Path) -> None:
    from firebreak.drill import runner

    with out.status(f"drill {scenario.name}…"):
        r = runner.run(scenario, report, progress=_progress_printer())
    _print_drill(r, report)
    raise typer.Exit(0 if r["verdict"] == "pass" else 1)


def _print_drill(r: dict, report: Path) -> None:
    colour = "green" if r["verdict"] == "pass" else "red"
    out.print(f"\n[bold {colour}]{r['verdict'].upper()}[/]  {r['scenario']['name']}")
    for f in r["failures"]:
        out.print(f"  [red]✗ {f}[/]")
    rto = "never" if r["write_rto_s"] is None else f"{r['write_rto_s']:.2f} s"
    out.print(f"  acknowledged writes {r['acked_writes']}, lost {r['acked_lost']}, duplicates {r['duplicates']}, "
              f"split brain {'yes' if r['split_brain'] else 'no'}")
    out.print(f"  write unavailability {rto}, longest gap {r['max_write_gap_s']:.2f} s")
    out.print("  read failures " + ", ".join(f"{s} {n}" for s, n in r["read_failures"].items()))
    if r["ops_actions"]:
        out.print("  ops actions ok " + ", ".join(f"{s} {d['ok']}/{d['tried']}" for s, d in r["ops_actions"].items()))
    out.print(f"  report: {report / 'report.html'}")


def _drill_fault(fault: str):
    def command(
        site: str = typer.Option(..., "--site", help="Site name, or 'primary' for the primary's site."),
        duration: float = typer.Option(0, "--duration", min=0, max=600, help="Hold the fault this long (0: until writes resume)."),
        clients: int = typer.Option(8, "--clients", min=1, max=256),
        rate: float = typer.Option(0, "--rate", min=0, help="Writes per second per client (0: as fast as answered)."),
        baseline: Baseline = typer.Option(Baseline.firebreak, "--baseline", help="patroni: freeze the agents."),
        report: Path = typer.Option(Path("reports/latest"), "--report", help="Directory for report.json and report.html."),
        loss: int = typer.Option(0, "--loss", min=0, max=100, help="degrade: percent of packets dropped."),
        rate_kbit: int = typer.Option(0, "--rate-kbit", min=0, help="degrade: bandwidth limit."),
        latency_ms: int = typer.Option(0, "--latency-ms", min=0, help="degrade: not available (no netem here)."),
    ) -> None:
        from firebreak.drill.scenario import FaultStep, Scenario
        from firebreak.lab import lab

        steps = [FaultStep(fault=fault, site=site, duration=duration, loss=loss, rate_kbit=rate_kbit,
                           latency_ms=latency_ms)]
        scenario = Scenario(name=f"{fault} {site}", clients=clients, rate=rate, baseline=baseline.value, steps=steps)
        from firebreak.drill.scenario import check_sites
        check_sites(scenario, list(lab.status()["sites"]), "command line")
        _run_drill(scenario, report)
    command.__doc__ = {
        "power-cut": "Cut a site's power: its address goes silent and every process dies at once.",
        "isolate": "Cut a site off from the other sites; its processes keep running.",
        "degrade": "Drop a share of a site's packets and/or limit its bandwidth.",
        "ops-tools": "Kill a site's agent and console while its data and app keep running.",
    }[fault]
    return command


for _fault in ("power-cut", "isolate", "degrade", "ops-tools"):
    drill_app.command(_fault)(_drill_fault(_fault))


@drill_app.command("run")
def drill_run(file: Path = typer.Argument(..., help="Scenario YAML: name, clients, steps of fault/wait/heal."),
              report: Path = typer.Option(Path("reports/latest"), "--report")) -> None:
    """Run a scripted sequence of faults (e.g. cut pangyo, wait, restore, cut ansan)."""
    from firebreak.drill.scenario import load_scenario
    from firebreak.lab import lab

    scenario = load_scenario(file)  # bad files are refused before the lab is even asked
    from firebreak.drill.scenario import check_sites
    check_sites(scenario, list(lab.status()["sites"]), str(file))
    _run_drill(scenario, report)


claims_app = typer.Typer(no_args_is_help=True, help="Damage reports: pricing by a declared policy, verification "
                                                     "against the outage ledger.")
app.add_typer(claims_app, name="claims")


@claims_app.command("price")
def claims_price(
    reports: Path = typer.Argument(..., help="Reports as CSV (with a header) or JSON lines."),
    policy: Path = typer.Option(..., "--policy", help="Policy YAML, e.g. examples/kakao-2022-policy.yaml."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Outage ledger YAML/JSON: {outages: [...]}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write one priced row per report (CSV)."),
) -> None:
    """Price reports in bulk and flag the ones a reviewer must look at."""
    import csv as _csv

    from firebreak.claims.batch import FLAG_NAMES, price_batch
    from firebreak.claims.io import read_reports
    from firebreak.claims.ledger import load_ledger
    from firebreak.claims.policy import load_policy

    pol = load_policy(policy)
    outages = load_ledger(ledger) if ledger else []
    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    table, rows = read_reports(reports)
    t0 = time.perf_counter()
    priced = price_batch(pol, table, outages)
    took = time.perf_counter() - t0
    summary = priced.summary(pol)
    if not outages:
        out.print("[yellow]no --ledger: every report is flagged outside-outage and priced on 0 verified hours[/]")
    out.print(f"priced {summary['reports']:,} reports with policy {pol.name} in {took:.2f} s")
    out.print(f"  payout {summary['total_payout']:,} {pol.currency} to {summary['paid']:,} reports, goodwill to "
              f"{summary['goodwill']:,}, {summary['needs_review']:,} need review")
    out.print("  flags: " + ", ".join(f"{k} {v:,}" for k, v in summary["flagged"].items()))
    out.print("  by rule: " + ", ".join(f"{k} {v:,}" for k, v in summary["by_rule"].items()) +
              (f", no rule {summary['no_rule']:,}" if summary["no_rule"] else ""))
    if output is not None:
        with output.open("w", newline="", encoding="utf-8") as fh:
            w = _csv.writer(fh)
            w.writerow(["row", "id", "rule", "amount", "review", "goodwill", "verified_hours", "flags"])
            for i in range(len(table)):
                rule = pol.rules[priced.rule[i]].id if priced.rule[i] >= 0 else ""
                flags = "|".join(name for bit, name in FLAG_NAMES.items() if priced.flags[i] & bit)
                good = pol.rules[priced.rule[i]].goodwill if priced.goodwill[i] else ""
                w.writerow([i + 1, rows[i].get("id", ""), rule, int(priced.amount[i]), bool(priced.review[i]), good,
                            round(float(priced.hours[i]), 3), flags])
        err.print(f"wrote {output}")


ops_app = typer.Typer(no_args_is_help=True, help="Ops actions against any site's console (the lab's, or real ones "
                                                "with --console). Token: --token or $FIREBREAK_OPS_TOKEN.")
app.add_typer(ops_app, name="ops")


def _consoles(console: Optional[str], site: Optional[str]) -> list[tuple[str, str]]:
    if console:
        return [(console, console.rstrip("/"))]
    from firebreak.lab import lab

    st = lab.status()
    found = [(n, s["console"]) for n, s in st["sites"].items() if s.get("console") and s["state"] == "up"]
    if site:
        found = [c for c in found if c[0] == site]
        if not found:
            raise InputError(Problem("--site", "", f"no running console in site '{site}'"))
    if not found:
        raise InputError(Problem("--site", "", "no site console is running; start the lab with agents"))
    return found


def _token(token: Optional[str]) -> str:
    import os

    if token:
        return token
    if os.environ.get("FIREBREAK_OPS_TOKEN"):
        return os.environ["FIREBREAK_OPS_TOKEN"]
    from firebreak.lab.state import lab_home, load_secrets

    try:
        return load_secrets(lab_home()).ops_token
    except (FileNotFoundError, TypeError):
        raise InputError(Problem("--token", "", "no operator token: pass --token or set FIREBREAK_OPS_TOKEN"))


def _ops(action: str, body: dict, console: Optional[str], site: Optional[str], token: Optional[str]) -> None:
    import httpx

    errors = []
    for name, url in _consoles(console, site):
        try:
            r = httpx.post(f"{url}/api/actions/{action}", json=body, timeout=60,
                           headers={"Authorization": f"Bearer {_token(token)}"})
        except httpx.HTTPError as e:
            errors.append(f"{name}: {e!r}")
            continue  # another site's console will do: ops must work from any surviving site
        doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"error": r.text}
        if r.status_code == 200:
            out.print(f"[green]{action}[/] via {name}: " + json.dumps({k: v for k, v in doc.items()
                                                                      if k not in ("ok", "action")}))
            return
        if r.status_code in (401, 403, 404, 409, 422):
            raise FirebreakError(f"{action} refused by {name}: {doc.get('error')}")
        errors.append(f"{name}: HTTP {r.status_code} {doc.get('error')}")
    raise FirebreakError(f"{action} failed everywhere: " + "; ".join(errors))


_console_opt = typer.Option(None, "--console", help="Console URL (default: the lab's consoles, any living one).")
_site_opt = typer.Option(None, "--site", help="Use this lab site's console.")
_token_opt = typer.Option(None, "--token", help="Operator token '<name>.<secret>'.")


@ops_app.command("status")
def ops_status(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt) -> None:
    """The control plane's view from one console: sites, primary, routing, incidents."""
    import httpx

    for name, url in _consoles(console, site):
        try:
            sys.stdout.write(json.dumps(httpx.get(url + "/api/status", timeout=5).json(), indent=2) + "\n")
            return
        except httpx.HTTPError:
            continue
    raise FirebreakError("no console answered")


@ops_app.command("freeze")
def ops_freeze(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt, token: Optional[str] = _token_opt) -> None:
    """Stop automatic failover (Patroni's own timers still apply)."""
    _ops("freeze", {}, console, site, token)


@ops_app.command("unfreeze")
def ops_unfreeze(console: Optional[str] = _console_opt, site: Optional[str] = _site_opt, token: Optional[str] = _token_opt) -> None:
    """Resume automatic failover."""
    _ops("unfreeze", {}, console, site, token)


@ops_app.command("switchover")
def ops_switchover(to: str = typer.Argument(..., help="Site to move the primary to."),
                   console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                   token: Optional[str] = _token_opt) -> None:
    """Move the primary to another site, cleanly."""
    _ops("switchover", {"to": to}, console, site, token)


@ops_app.command("evacuate")
def ops_evacuate(target: str = typer.Argument(..., metavar="SITE"), console: Optional[str] = _console_opt,
                 site: Optional[str] = _site_opt, token: Optional[str] = _token_opt) -> None:
    """Drain a site's traffic and move the primary away from it."""
    _ops("evacuate", {"site": target}, console, site, token)


@ops_app.command("restore")
def ops_restore(target: str = typer.Argument(..., metavar="SITE"), console: Optional[str] = _console_opt,
                site: Optional[str] = _site_opt, token: Optional[str] = _token_opt) -> None:
    """Send traffic to an evacuated site again."""
    _ops("restore", {"site": target}, console, site, token)


@ops_app.command("release")
def ops_release(version: str = typer.Argument(...), notes: str = typer.Option("", "--notes"),
                console: Optional[str] = _console_opt, site: Optional[str] = _site_opt,
                token: Optional[str] = _token_opt) -> None:
    """Put a release into the release store (replicated to every site)."""
    _ops("release", {"version": version, "notes": notes}, console, site, token)


@ops_app.command("deploy")
def ops_deploy(version: str = typer.Argument(...), console: Optional[str] = _console_opt,
               site: Optional[str] = _site_opt, token: Optional[str] = _token_opt) -> None:
    """Roll a release of the reference service out to every living site."""
    _ops("deploy", {"version": version}, console, site, token)


@ops_app.command("user-add")
def ops_user_add(name: str = typer.Argument(...), role: str = typer.Option("operator", "--role"),
                 etcd: list[str] = typer.Option(None, "--etcd", help="etcd client URL(s); default: the lab's."),
                 prefix: str = typer.Option("/firebreak", "--prefix")) -> None:
    """Create an operator and print its token once (only an argon2 hash is stored)."""
    import asyncio

    from firebreak.control.auth import ROLES, add_operator, check_name
    from firebreak.control.etcd import Etcd

    problem = check_name(name)
    if problem:
        raise InputError(Problem("NAME", "", problem))
    if role not in ROLES:
        raise InputError(Problem("--role", "", f"must be one of {', '.join(ROLES)}"))
    if not etcd:
        from firebreak.lab import lab
        etcd = lab.status()["etcd_endpoints"]

    async def go() -> str:
        client = Etcd(list(etcd), timeout=3)
        try:
            return await add_operator(client, prefix, name, role)
        finally:
            await client.close()
    out.print(f"operator {name} ({role}) created. Token, shown only now:")
    sys.stdout.write(asyncio.run(go()) + "\n")


@app.command()
def agent(config: Path = typer.Option(..., "--config", help="Agent configuration (YAML).")) -> None:
    """Run this site's agent: probes, failure detection by agreement, failover, console."""
    from firebreak.control.config import load_agent_config
    from firebreak.control.run import main as run_agent

    load_agent_config(config)  # bad config: clear errors and exit 2 before anything starts
    run_agent(str(config))


@app.command()
def demo(no_lab: bool = typer.Option(False, "--no-lab", help="Only the topology analysis, no real sites."),
         report: Path = typer.Option(Path("reports/demo"), "--report")) -> None:
    """The whole story: what a site loss does to a bad and a good topology, then a real power cut."""
    from firebreak.demo import run_demo

    raise typer.Exit(run_demo(out, report, with_lab=not no_lab))


def main() -> None:
    try:
        app(prog_name="firebreak")
    except InputError as e:
        for p in e.problems:
            err.print(str(p), markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except FirebreakError as e:
        err.print(f"firebreak: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("firebreak: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

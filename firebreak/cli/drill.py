"""`firebreak drill`: faults under load, judged from a recorded history against objectives."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from firebreak.cli.base import OutputFormat, app, err, out, progress_printer

drill_app = typer.Typer(no_args_is_help=True, help="Faults under load on a running lab, judged from a recorded "
                                                    "history against objectives. Exit 0 when every objective is "
                                                    "met, 1 when one is missed, 2 on bad input.")
app.add_typer(drill_app, name="drill")


class Baseline(str, Enum):
    firebreak = "firebreak"
    patroni = "patroni"


# Options every drill command takes: where reports go, JUnit, output format, and objectives.
REPORT = typer.Option(Path("reports"), "--report",
                      help="Directory for reports: each drill gets a new timestamped directory in it, and "
                           "`latest` points at the newest. Nothing is overwritten.")
JUNIT = typer.Option(None, "--junit", help="Also write a JUnit XML report here (one test case per objective).")
FORMAT = typer.Option(OutputFormat.text, "--format", help="text for people, json (the report) for programs.")
MAX_RTO = typer.Option(None, "--max-write-unavailability", min=0.01, max=600,
                       help="Objective, seconds until writes resume after a fault (default 3).")
MAX_GAP = typer.Option(None, "--max-write-gap", min=0.01, max=600,
                       help="Objective, longest stretch with no write acknowledged (default: the above + 0.5).")
MAX_LOST = typer.Option(None, "--max-lost", min=0, help="Objective, acknowledged writes lost (default 0).")
MAX_READS = typer.Option(None, "--max-read-failures", min=0,
                         help="Objective, failed reads in sites not under a fault (default 0).")
MAX_OPS = typer.Option(None, "--max-failed-ops", min=0,
                       help="Objective, failed ops actions from sites not under a fault (default 0).")


def _objectives(base, rto, gap, lost, reads, ops_):
    """The scenario's objectives with the flags that were given laid over them."""
    given = {"max_write_unavailability_s": rto, "max_write_gap_s": gap, "max_acked_lost": lost,
             "max_read_failures": reads, "max_failed_ops": ops_}
    return base.model_copy(update={k: v for k, v in given.items() if v is not None})


def _run_drill(scenario, root: Path, label: str, junit: Path | None, fmt: OutputFormat,
               chaos: tuple[int, int] | None = None) -> None:
    from firebreak.drill import runner
    from firebreak.drill.report import junit_xml, new_report_dir
    from firebreak.errors import InputError, Problem

    if junit is not None and not junit.parent.is_dir():
        raise InputError(Problem("--junit", "", f"directory {junit.parent} does not exist; create it first"))
    report_dir = new_report_dir(root, scenario.name)
    runner.heal_on_sigterm()
    show = progress_printer(err if fmt == OutputFormat.json else out)
    with (err if fmt == OutputFormat.json else out).status(f"drill {scenario.name}…"):
        r = runner.run(scenario, report_dir, progress=show, label=label, chaos=chaos)
    if junit is not None:
        junit.write_text(junit_xml(r), encoding="utf-8")
    if fmt == OutputFormat.json:
        sys.stdout.write((report_dir / "report.json").read_text())
    else:
        _print_drill(r, report_dir)
    raise typer.Exit(0 if r["verdict"] == "pass" else 1)


def _print_drill(r: dict, report: Path) -> None:
    colour = "green" if r["verdict"] == "pass" else "red"
    out.print(f"\n[bold {colour}]{r['verdict'].upper()}[/]  {r['scenario']['name']}")
    for o in r["objectives"]:
        mark = "[green]✓[/]" if o["met"] else "[red]✗[/]"
        # A missed objective's failure line also says which operations missed it, and when.
        line = next((f for f in r["failures"] if not o["met"] and f.startswith(o["reason"])), o["reason"])
        out.print(f"  {mark} {escape(line)}")
    objective_texts = {o["reason"] for o in r["objectives"]}
    for f in r["failures"]:
        if not any(f.startswith(t) for t in objective_texts):
            out.print(f"  [red]✗ {f}[/]")
    out.print(f"  acknowledged writes {r['acked_writes']}, lost {r['acked_lost']}, duplicates {r['duplicates']}, "
              f"split brain {'yes' if r['split_brain'] else 'no'}")
    if r["read_failures"]:
        out.print("  read failures " + ", ".join(f"{s} {n}" for s, n in r["read_failures"].items()))
    for name, c in (r.get("clusters") or {}).items():
        u = c["write_unavailability_s"]
        out.print(f"  cluster {name}: writes unavailable {'never resumed' if u is None else f'{u:.2f} s'}, "
                  f"acknowledged {c['acked_writes']}, lost {c['acked_lost']}")
    for name, s in (r.get("services") or {}).items():
        mark = "[green]✓[/]" if s["as_predicted"] else "[yellow]≠[/]"
        why = (r.get("service_details") or {}).get(name, {}).get("why", "")
        out.print(f"  {mark} {name}: predicted {s['predicted']}, observed {s['observed']} [dim]({why})[/]")
    if oc := r.get("ordinary_client"):
        waits = ", ".join("never resumed" if u is None else f"{u:.2f} s" for u in oc["write_unavailability_s"])
        out.print(f"  ordinary client through {oc['door']}'s database door: writes unavailable {waits or '—'}, "
                  f"acknowledged {oc['acked_writes']}, lost {oc['acked_lost']}")
    if r["ops_actions"]:
        out.print("  ops actions ok " + ", ".join(f"{s} {d['ok']}/{d['tried']}" for s, d in r["ops_actions"].items()))
    if c := r.get("chaos"):
        for line in chaos_lines(c):
            out.print("  " + escape(line))
    out.print(f"  report: {report / 'report.html'}")


def chaos_lines(c: dict) -> list[str]:
    """The chaos summary as text: one line of totals, one per kind of fault. Pure."""
    lines = [f"chaos seed {c['seed']}, {c['minutes']} min: {c['faults']} faults; acknowledged writes "
             f"{c['acked_writes']}, lost {c['acked_lost']}, split brain {'yes' if c['split_brain'] else 'no'}; "
             f"checks after the heals {c['checks'] - c['checks_failed']}/{c['checks']} passed"]
    for kind, d in c["by_kind"].items():
        worst = d["worst_write_unavailability_s"]
        lines.append(f"  {kind}: {d['injected']} injected, worst write unavailability "
                     + ("never resumed" if worst is None else f"{worst:.2f} s"))
    return lines


def _drill_fault(fault: str):
    def command(
        site: str = typer.Option(..., "--site", help="Site name, 'primary' for the primary's site (on a lab built from a "
                                  "topology: the site holding the most primaries), or 'sync-standby' for the "
                                  "synchronous standby's."),
        duration: float = typer.Option(0, "--duration", min=0, max=600, help="Hold the fault this long (0: until writes resume)."),
        clients: int = typer.Option(8, "--clients", min=1, max=256),
        rate: float = typer.Option(0, "--rate", min=0, help="Writes per second per client (0: as fast as answered)."),
        baseline: Baseline = typer.Option(Baseline.firebreak, "--baseline", help="patroni: freeze the agents."),
        report: Path = REPORT,
        junit: Optional[Path] = JUNIT,
        fmt: OutputFormat = FORMAT,
        loss: int = typer.Option(0, "--loss", min=0, max=100, help="degrade: percent of packets dropped."),
        rate_kbit: int = typer.Option(0, "--rate-kbit", min=0, help="degrade: bandwidth limit."),
        latency_ms: int = typer.Option(0, "--latency-ms", min=0, help="degrade: not available (no netem here)."),
        max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP, max_lost: Optional[int] = MAX_LOST,
        max_reads: Optional[int] = MAX_READS, max_ops: Optional[int] = MAX_OPS,
    ) -> None:
        from firebreak.drill.objectives import Objectives
        from firebreak.drill.scenario import FaultStep, Scenario

        steps = [FaultStep(fault=fault, site=site, duration=duration, loss=loss, rate_kbit=rate_kbit,
                           latency_ms=latency_ms)]
        objectives = _objectives(Objectives(), max_rto, max_gap, max_lost, max_reads, max_ops)
        scenario = Scenario(name=f"{fault} {site}", clients=clients, rate=rate, baseline=baseline.value, steps=steps,
                            objectives=objectives)
        _run_drill(scenario, report, "command line", junit, fmt)
    command.__doc__ = {
        "power-cut": "Cut a site's power: its address goes silent and every process dies at once.",
        "isolate": "Cut a site off from the other sites; its processes keep running.",
        "degrade": "Drop a share of a site's packets and/or limit its bandwidth.",
        "ops-tools": "Kill a site's agent and console while its data and app keep running.",
    }[fault]
    return command


for _fault in ("power-cut", "isolate", "degrade", "ops-tools"):
    drill_app.command(_fault)(_drill_fault(_fault))


# Options the gray-failure commands share with the others.
CLIENTS = typer.Option(8, "--clients", min=1, max=256)
RATE = typer.Option(0, "--rate", min=0, help="Writes per second per client (0: as fast as answered).")
BASELINE = typer.Option(Baseline.firebreak, "--baseline", help="patroni: freeze the agents.")
ROLE_HELP = ("'primary' / 'sync-standby' for the site whose PostgreSQL holds that role, 'etcd-leader' for the "
             "site whose etcd member leads raft")


def _gray(fault: str, site: str, name: str, clients: int, rate: float, baseline: Baseline, report: Path,
          junit: Path | None, fmt: OutputFormat, objectives: tuple, **fields) -> None:
    """Build the one-step scenario, check it whole (the same rules as a scenario file), and run it."""
    from firebreak.drill.objectives import Objectives
    from firebreak.drill.scenario import FaultStep, Scenario, check_steps
    from firebreak.errors import InputError, Problem

    step = FaultStep(fault=fault, site=site, **{k: v for k, v in fields.items() if v is not None})
    scenario = Scenario(name=name, clients=clients, rate=rate, baseline=baseline.value, steps=[step],
                        objectives=_objectives(Objectives(), *objectives))
    try:
        check_steps(scenario, "command line")  # before the lab is even asked
    except InputError as e:
        # The rules are the scenario file's; the person typed flags, so the flags are named.
        raise InputError([Problem("--" + p.path.rpartition(".")[2].replace("_", "-").replace("peer", "sites"), "",
                                  p.reason) for p in e.problems]) from None
    _run_drill(scenario, report, "command line", junit, fmt)


@drill_app.command("partition")
def drill_partition(
    sites: str = typer.Option(..., "--sites", help=f"The link's two ends, comma-separated: A,B (each a site or {ROLE_HELP}). "
                              "The drill is judged for A."),
    duration: float = typer.Option(0, "--duration", min=0, max=600, help="Hold the cut this long (0: until writes resume)."),
    clients: int = CLIENTS, rate: float = RATE, baseline: Baseline = BASELINE,
    report: Path = REPORT, junit: Optional[Path] = JUNIT, fmt: OutputFormat = FORMAT,
    max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP, max_lost: Optional[int] = MAX_LOST,
    max_reads: Optional[int] = MAX_READS, max_ops: Optional[int] = MAX_OPS,
) -> None:
    """Cut the link between two sites, both ways silent; every other link stays up."""
    from firebreak.drill.scenario import parse_link

    a, b = parse_link(sites)
    _gray("partition", a, f"partition {a},{b}", clients, rate, baseline, report, junit, fmt,
          (max_rto, max_gap, max_lost, max_reads, max_ops), peer=b, duration=duration)


@drill_app.command("pause")
def drill_pause(
    site: str = typer.Option(..., "--site", help=f"Site name, or {ROLE_HELP}."),
    component: Optional[str] = typer.Option(None, "--component", help="postgres: PostgreSQL alone (a storage hang); "
                                            "default every process of the site (a hung host)."),
    duration: float = typer.Option(8, "--duration", min=0.1, max=600,
                                   help="Seconds stopped; the pause lasts this long even if writes resume sooner."),
    clients: int = CLIENTS, rate: float = RATE, baseline: Baseline = BASELINE,
    report: Path = REPORT, junit: Optional[Path] = JUNIT, fmt: OutputFormat = FORMAT,
    max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP, max_lost: Optional[int] = MAX_LOST,
    max_reads: Optional[int] = MAX_READS, max_ops: Optional[int] = MAX_OPS,
) -> None:
    """Stop a site's processes with SIGSTOP, then continue them (SIGCONT) after --duration."""
    _gray("pause", site, f"pause {site}" + (f" {component}" if component else ""), clients, rate, baseline, report,
          junit, fmt, (max_rto, max_gap, max_lost, max_reads, max_ops), component=component, duration=duration)


@drill_app.command("flap")
def drill_flap(
    site: str = typer.Option(..., "--site", help=f"Site name, or {ROLE_HELP}."),
    period: float = typer.Option(..., "--period", min=0, max=600,
                                 help="Seconds of one down-and-up cycle: links down for half, up for half (at least 1)."),
    duration: float = typer.Option(60, "--duration", min=0.1, max=600, help="Seconds of flapping; then healed."),
    clients: int = CLIENTS, rate: float = RATE, baseline: Baseline = BASELINE,
    report: Path = REPORT, junit: Optional[Path] = JUNIT, fmt: OutputFormat = FORMAT,
    max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP, max_lost: Optional[int] = MAX_LOST,
    max_reads: Optional[int] = MAX_READS, max_ops: Optional[int] = MAX_OPS,
) -> None:
    """Take a site's links to every other site down and up every --period/2 seconds, then heal."""
    from firebreak.errors import InputError, Problem

    if period <= 0:  # the scenario model's own message would name period, not the flag
        raise InputError(Problem("--period", "", f"must be above 0 seconds, got {period:g}"))
    _gray("flap", site, f"flap {site}", clients, rate, baseline, report, junit, fmt,
          (max_rto, max_gap, max_lost, max_reads, max_ops), period=period, duration=duration)


@drill_app.command("run")
def drill_run(file: Path = typer.Argument(..., help="Scenario YAML: name, clients, objectives, steps of fault/wait/heal."),
              report: Path = REPORT, junit: Optional[Path] = JUNIT, fmt: OutputFormat = FORMAT,
              max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP,
              max_lost: Optional[int] = MAX_LOST, max_reads: Optional[int] = MAX_READS,
              max_ops: Optional[int] = MAX_OPS) -> None:
    """Run a scripted sequence of faults (e.g. cut pangyo, wait, restore, cut ansan)."""
    from firebreak.drill.scenario import load_scenario

    scenario = load_scenario(file)  # bad files are refused before the lab is even asked
    scenario = scenario.model_copy(update={"objectives": _objectives(scenario.objectives, max_rto, max_gap,
                                                                     max_lost, max_reads, max_ops)})
    _run_drill(scenario, report, str(file), junit, fmt)


@drill_app.command("chaos")
def drill_chaos(
    minutes: int = typer.Option(..., "--minutes", min=1, max=24 * 60,
                                help="Minutes the drill may take: faults are drawn while the next one still fits."),
    seed: int = typer.Option(..., "--seed", help="The plan's seed: the same seed draws the same faults, in the same "
                             "order, held and spaced alike."),
    report: Path = REPORT, junit: Optional[Path] = JUNIT, fmt: OutputFormat = FORMAT,
    max_rto: Optional[float] = MAX_RTO, max_gap: Optional[float] = MAX_GAP, max_lost: Optional[int] = MAX_LOST,
    max_reads: Optional[int] = MAX_READS, max_ops: Optional[int] = MAX_OPS,
) -> None:
    """Random faults from the whole catalogue for --minutes, drawn by --seed: power cuts, isolations,
    partitions, pauses, flaps, killed agents and bad values in etcd, each held, healed, the lab
    healthy again and its replicas checked before the next. Judged from the whole history."""
    from firebreak.drill import chaos
    from firebreak.drill.objectives import Objectives
    from firebreak.errors import InputError, Problem
    from firebreak.lab import lab
    from firebreak.lab.net import have_nft

    if junit is not None and not junit.parent.is_dir():  # before the lab is even asked
        raise InputError(Problem("--junit", "", f"directory {junit.parent} does not exist; create it first"))
    st = lab.status()
    if st.get("estate"):
        raise InputError(Problem("lab", "", "a chaos drill runs on the default three-site lab; this one was built "
                                            "from a topology (`firebreak lab up` without --topology)"))
    scenario = chaos.plan(seed, minutes, list(st["sites"]), can_filter=have_nft(),
                          objectives=_objectives(Objectives(), max_rto, max_gap, max_lost, max_reads, max_ops))
    _run_drill(scenario, report, f"chaos seed {seed}", junit, fmt, chaos=(seed, minutes))

"""`firebreak drill`: faults under load, judged from a recorded history."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from firebreak.cli.base import app, out, progress_printer


drill_app = typer.Typer(no_args_is_help=True, help="Faults under load on a running lab, judged from a recorded "
                                                    "history. Exit 0 when the drill passes, 1 when it fails.")
app.add_typer(drill_app, name="drill")


class Baseline(str, Enum):
    firebreak = "firebreak"
    patroni = "patroni"


def _run_drill(scenario, report: Path, label: str) -> None:
    from firebreak.drill import runner

    with out.status(f"drill {scenario.name}…"):
        r = runner.run(scenario, report, progress=progress_printer(), label=label)
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

        steps = [FaultStep(fault=fault, site=site, duration=duration, loss=loss, rate_kbit=rate_kbit,
                           latency_ms=latency_ms)]
        scenario = Scenario(name=f"{fault} {site}", clients=clients, rate=rate, baseline=baseline.value, steps=steps)
        _run_drill(scenario, report, "command line")
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

    scenario = load_scenario(file)  # bad files are refused before the lab is even asked
    _run_drill(scenario, report, str(file))



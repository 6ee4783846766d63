"""`firebreak demo`: what `make demo` runs for a newcomer. The whole story in a few minutes:
what losing a site does to a bad and a good topology, then a real power cut under load."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from firebreak.readiness import analyse_all
from firebreak.readiness.render import print_text
from firebreak.resources import EXAMPLES
from firebreak.topology import load_topology




def run_demo(console: Console, report_dir: Path = Path("reports/demo"), with_lab: bool = True) -> int:
    console.print(Rule("1. October 2022: data copied to a second site, login and tools only in Pangyo"))
    kakao = analyse_all(load_topology(EXAMPLES / "kakao-2022.yaml", "examples/kakao-2022.yaml"))
    print_text(kakao, console, limit=12)
    console.print(Rule("2. The Firebreak lab's topology: every single site's loss is survivable"))
    lab_topo = analyse_all(load_topology(EXAMPLES / "firebreak-lab.yaml", "examples/firebreak-lab.yaml"))
    print_text(lab_topo, console)
    story_ok = kakao.failing and not lab_topo.failing
    if not story_ok:
        console.print("[bold red]Unexpected: the examples no longer tell the story they should.[/]")
        return 1
    if not with_lab:
        return 0
    return _lab_story(console, report_dir)


def _lab_story(console: Console, report_dir: Path) -> int:
    from firebreak.drill import runner
    from firebreak.drill.scenario import single
    from firebreak.lab import lab
    from firebreak.lab.state import lab_home, load

    if load(lab_home()) is not None:
        console.print("[yellow]A lab is already running here; the demo brings up its own. Run "
                      "`firebreak lab down` first, or try `firebreak drill power-cut --site primary`.[/]")
        return 1
    console.print(Rule("3. Three real sites on this machine: etcd, PostgreSQL under Patroni, the service, agents"))
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - t0:5.1f}s[/]  {msg}")

    try:
        with console.status("bringing the lab up…"):
            lab.up(progress=progress)
        st = lab.status()
        console.print(f"lab up: primary in [bold]{st['primary']}[/], synchronous standby in "
                      + ", ".join(n for n, s in st["sites"].items() if s["postgres"]["role"] == "sync_standby"))
        console.print(Rule(f"4. Power cut of {st['primary']}, the primary's site, under load"))
        with console.status("drill running…"):
            report = runner.run(single("power-cut", "primary", 0, 8, 0, "firebreak"), report_dir, progress=progress)
    finally:
        with console.status("taking the lab down…"):
            lab.down()
    colour = "green" if report["verdict"] == "pass" else "red"
    console.print(Rule("5. What the recorded history says"))
    console.print(f"[bold {colour}]{report['verdict'].upper()}[/]: {report['acked_writes']} acknowledged writes, "
                  f"{report['acked_lost']} lost, {report['duplicates']} duplicated, split brain "
                  f"{'yes' if report['split_brain'] else 'no'}")
    rto = report["write_rto_s"]
    unavailable = (f"writes were unavailable for {rto:.2f} s after the power cut" if rto is not None
                   else "writes did NOT resume after the power cut (see the report and `firebreak lab status`)")
    console.print(f"{unavailable} (Patroni alone: about 22 s, see docs/BENCHMARKS.md); reads failed in "
                  f"surviving sites: {sum(report['read_failures'].values())}")
    console.print(f"report: {report_dir / 'report.html'}")
    return 0 if report["verdict"] == "pass" else 1

"""`firebreak demo`: what `make demo` runs for a newcomer."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from firebreak.readiness import analyse_all
from firebreak.readiness.render import print_text
from firebreak.topology import load_topology

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_demo(console: Console) -> int:
    console.print(Rule("1. The October 2022 setup: data copied to a second site, tools only in Pangyo"))
    kakao = analyse_all(load_topology(EXAMPLES / "kakao-2022.yaml", "examples/kakao-2022.yaml"))
    print_text(kakao, console, limit=25)
    console.print(Rule("2. The Firebreak lab: every site's loss is survivable"))
    lab = analyse_all(load_topology(EXAMPLES / "firebreak-lab.yaml", "examples/firebreak-lab.yaml"))
    print_text(lab, console)
    ok = kakao.failing and not lab.failing
    console.print()
    console.print("The first topology fails for the loss of pangyo; the second passes for every single site."
                  if ok else "[bold red]Unexpected: the examples no longer tell the story they should.[/]")
    return 0 if ok else 1

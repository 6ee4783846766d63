"""`firebreak agent` and `firebreak demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from firebreak.cli.base import app, out


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

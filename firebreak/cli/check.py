"""`firebreak check`: what losing each site does to a declared topology."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from firebreak.cli.base import app, err, out, read_estate
from firebreak.errors import InputError, Problem


class Format(str, Enum):
    text = "text"
    json = "json"
    md = "md"
    html = "html"


@app.command()
def check(
    file: Optional[Path] = typer.Argument(None, help="Topology YAML file (or --live)."),
    live: Optional[str] = typer.Option(None, "--live", metavar="CONSOLE_URL",
                                       help="Analyse the running estate, as any site's console sees it now."),
    against: Optional[Path] = typer.Option(None, "--against", metavar="FILE",
                                           help="With --live: also list where the running estate differs from "
                                                "this declared topology (drift)."),
    pairs: bool = typer.Option(False, "--pairs", help="Also analyse the loss of every pair of sites."),
    fmt: Format = typer.Option(Format.text, "--format", help="text for people, json for programs, md or html to share."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
) -> None:
    """What losing each site does to a declared topology (or the running one), ops tools included.

    Exit 0 when no scenario has a finding of kind down, unrecoverable, quorum-lost or data-loss
    (and, with --against, the running estate matches the file); 1 when one does (or it drifted);
    2 on bad input.
    """
    import gc

    from firebreak.readiness import analyse_all
    from firebreak.readiness import render
    from firebreak.readiness.fanout import json_report
    from firebreak.topology import load_topology

    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    # A one-shot command that allocates a million small objects and no reference cycles: the
    # cyclic collector would rescan them over and over (a third of the run time at 10,000
    # services). Reference counting still frees everything; the process exits right after.
    gc.disable()
    drift = None
    if live is not None:
        if file is not None:
            raise InputError(Problem("FILE", "", "give a topology file or --live, not both; with --live, "
                                                 "--against FILE compares the running estate with the file"))
        from firebreak.readiness.live import drift as drift_of
        from firebreak.readiness.live import live_topology
        declared = load_topology(against) if against is not None else None
        topology = live_topology(read_estate(live, "--live"), declared, label=live)
        drift = drift_of(declared, topology) if declared is not None else None
    elif against is not None:
        raise InputError(Problem("--against", "", "only with --live CONSOLE_URL (compare a file with the running "
                                                  "estate)"))
    elif file is None:
        raise InputError(Problem("FILE", "", "missing: give a topology file, or --live CONSOLE_URL"))
    else:
        topology = load_topology(file)
    drifted = bool(drift)
    if fmt == Format.json:
        data, failing = json_report(topology, pairs=pairs)
        if drift is not None:
            import orjson
            data = orjson.dumps({**orjson.loads(data), "drift": drift}) + b"\n"
        _emit(data, output)
        raise typer.Exit(1 if failing or drifted else 0)
    report = analyse_all(topology, pairs=pairs)
    if fmt == Format.text:
        if output is None:
            render.print_text(report, out)
        else:
            with output.open("w", encoding="utf-8") as fh:
                render.print_text(report, Console(file=fh, width=120, color_system=None))
    else:
        _emit({Format.md: render.to_markdown, Format.html: render.to_html}[fmt](report).encode(), output)
    if output is not None and fmt == Format.text:
        err.print(f"wrote {output}")
    if drift is not None:
        _print_drift(drift, against)
    raise typer.Exit(1 if report.failing or drifted else 0)


def _print_drift(drift: list[dict], against: Path | None) -> None:
    if not drift:
        out.print(f"[green]No drift:[/] the running estate matches {against}.")
        return
    out.print(f"[bold red]Drift:[/] {len(drift)} difference(s) between {against} and the running estate")
    for d in drift:
        out.print(f"  {d['service']}: {d['field']}: declared {d['declared']}, running {d['running']}")


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
        err.print(f"wrote {output}")

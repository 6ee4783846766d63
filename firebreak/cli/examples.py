"""`firebreak examples`: the example files that ship inside the package, and where they are."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from firebreak.cli.base import OutputFormat, app, out
from firebreak.errors import InputError, Problem


@app.command("examples")
def examples(
    copy_to: Optional[Path] = typer.Option(None, "--copy-to", help="Copy every example into this directory."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs."),
) -> None:
    """List the example topologies, the Kakao 2022 policy and ledger that ship with Firebreak."""
    from firebreak.resources import EXAMPLES

    files = sorted(p for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))
    if copy_to is not None:
        if not copy_to.is_dir():
            raise InputError(Problem("--copy-to", "", f"directory {copy_to} does not exist; create it first"))
        for p in files:
            shutil.copyfile(p, copy_to / p.name)
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps({p.name: str(p) for p in files}, indent=2) + "\n")
        return
    for p in files:
        out.print(f"{p.name:<28} {copy_to / p.name if copy_to else p}", highlight=False, soft_wrap=True)

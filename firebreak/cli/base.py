"""The app, the consoles and helpers every command module shares."""

from __future__ import annotations

import time

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make losing a whole site a non-event, provably.")
out = Console()
err = Console(stderr=True)


def progress_printer():
    """A progress callback that prints each step with the time since the command started."""
    t0 = time.monotonic()

    def show(msg: str) -> None:
        out.print(f"[dim]{time.monotonic() - t0:5.1f}s[/]  {msg}")
    return show

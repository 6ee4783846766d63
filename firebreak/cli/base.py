"""The app, the consoles and helpers every command module shares."""

from __future__ import annotations

import time
from enum import Enum

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make losing a whole site a non-event, provably.")
out = Console()
err = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        import sys

        from firebreak import __version__

        sys.stdout.write(f"firebreak {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print Firebreak's version and exit.")) -> None:
    """Make losing a whole site a non-event, provably."""


class OutputFormat(str, Enum):
    """The one output convention: every command that reports something takes --format text|json.
    text is a table for people; json is stable, documented in docs/CLI.md, for programs."""

    text = "text"
    json = "json"


def progress_printer(console: Console | None = None):
    """A progress callback that prints each step with the time since the command started
    (to stderr when stdout carries JSON)."""
    t0 = time.monotonic()
    console = console or out

    def show(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - t0:5.1f}s[/]  {msg}")
    return show


def confirm(question: str, yes: bool) -> None:
    """Ask before an action that moves primaries or traffic, as patronictl does. --yes skips the
    question; without a terminal and without --yes the action is refused, never assumed."""
    import sys

    from firebreak.errors import InputError, Problem

    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(Problem("--yes", "", "this action moves primaries or traffic; there is no terminal "
                                              "to confirm it on, so pass --yes"))
    if not typer.confirm(question, default=False):
        err.print("aborted: nothing was changed")
        raise typer.Exit(1)


def read_estate(url: str, option: str) -> dict:
    """A console's view of the running estate (GET /api/estate); a clear error, naming `option`
    (where the URL came from), when it cannot be had."""
    import httpx

    from firebreak.errors import InputError, Problem

    try:
        r = httpx.get(url.rstrip("/") + "/api/estate", timeout=5)
    except httpx.HTTPError as e:
        raise InputError(Problem(option, "", f"cannot reach the console at {url}: {e!r}; give any living "
                                             "site's console URL (`firebreak lab status` lists the lab's)"))
    if r.status_code != 200:
        raise InputError(Problem(option, "", f"{url}/api/estate answered HTTP {r.status_code}; is it a "
                                             "Firebreak console of this version?"))
    try:
        doc = r.json()
        doc["sites"]
    except (ValueError, KeyError, TypeError):
        raise InputError(Problem(option, "", f"{url}/api/estate did not answer with an estate"))
    return doc

"""The one `firebreak` command. Each subcommand is a thin shell over a package's pure core;
each command group lives in its own module here."""

from __future__ import annotations

import sys

from firebreak.cli.base import app, err
from firebreak.errors import FirebreakError, InputError

# Importing the command modules registers their commands on `app`.
from firebreak.cli import check, examples, lab, drill, ops, claims, agent, deploy  # noqa: E402,F401,I001
from firebreak.cli import pki  # noqa: E402,F401,I001


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

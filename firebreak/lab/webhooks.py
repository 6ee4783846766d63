"""The lab's webhook subscribers: every site's app announces incidents to them, as the operator's
subscribers file (FIREBREAK_WEBHOOKS, claims/subscribers.py) makes a real deployment do.

Written as an operator would: one subscribers file and a secret file per subscriber, readable by
the apps' user only, then the apps restarted one site at a time (a secret is read at start).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import yaml

from firebreak.lab import runtime
from firebreak.lab.faults import start_component, stop_component
from firebreak.lab.status import require


def subscribe(subscribers: Sequence[tuple[str, str]], home: Path | None = None) -> Path | None:
    """Every site's app sends incidents to these (url, secret) subscribers from now on; none: to
    nobody (the file is removed). Returns the subscribers file, or None. A subscriber listening on
    the machine is reached by the sites at `status()`'s `host_address`."""
    state = require(home)
    layout = state.layout
    folder = layout.webhooks_file.parent
    shutil.rmtree(folder, ignore_errors=True)
    if subscribers:
        folder.mkdir(mode=0o700)
        doc = {"public_url": layout.sites[0].url("door"), "subscribers": [], "poll_s": 1}
        for i, (url, secret) in enumerate(subscribers):
            path = folder / f"subscriber-{i}.secret"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret)
            doc["subscribers"].append({"url": url, "secret_file": path.name})
        layout.webhooks_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        runtime.chown_tree(folder, state.user)
    for site in layout.sites:  # one site at a time: the other sites' apps serve meanwhile
        stop_component(site.name, "app", home=state.home)
        start_component(site.name, "app", home=state.home)
    return layout.webhooks_file if subscribers else None

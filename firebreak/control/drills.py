"""Drills declared in etcd (control/keys.py `drills/<site>`), as the coordinator reads them. Pure.

A drill on the lab (`firebreak drill`) cuts a site's power or isolates it for real, so the agents
see a real loss: they must fail over exactly as for one (a drill exercises the real path), but
what they record for it is a rehearsal, not an outage anybody is paid for (issue 31). So the
drill runner declares each site before it faults it, under a lease it keeps alive while it runs
(drill/harness.py Declaration), and the coordinator records an incident or a service outage that
opens while its site is declared as the drill's (`"source": "drill"`), which the claims reader,
the status page and the credits leave out.

The declaration can only hide outages, never make one, so it is read warily: only a well-formed
value under a lease counts (a hand-made put without one would never go away by itself), only
until the `until` it gives (a runner that hangs with its keepalive still beating stops declaring
at its plan's end), and a value that does not parse is BadValue, which the shell ignores and
counts: no drill, so the outage is recorded as a real one. Who may write the key is what makes
it believable: etcd's root only (control/keys.py role_grants), never an agent's user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from firebreak.control.values import json_object, seconds
from firebreak.errors import BadValue

MAX_ID = 200  # a drill's id is written into every ledger entry it classifies


@dataclass(frozen=True)
class Drill:
    site: str      # from the key, not the value: the key is what the writer was allowed to write
    id: str        # the drill's name for itself (harness.drill_id): scenario and start
    since: float   # wall clock, when the runner declared this site
    until: float   # wall clock, the drill's planned end at the latest

    @classmethod
    def from_value(cls, site: str, raw: str, lease: int) -> "Drill":
        """The declaration stored under `drills/<site>`, or BadValue naming the field. Fields this
        version does not know (the fault, the scenario, the runner's host) are ignored."""
        what = f"drill over {site}"
        if lease <= 0:
            raise BadValue(f"{what}: not under a lease (a drill runner that died would leave it declared for "
                           "ever); the drill runner writes it under one it keeps alive")
        d = json_object(raw, what)
        drill = d.get("drill")
        if not isinstance(drill, str) or not drill.strip() or len(drill) > MAX_ID:
            raise BadValue(f"{what}: drill must be the drill's id, 1 to {MAX_ID} characters, got {drill!r}")
        since = seconds(d.get("since"), f"{what}: since", minimum=0.0)
        until = seconds(d.get("until"), f"{what}: until", minimum=0.0)
        if until < since:
            raise BadValue(f"{what}: until ({until:.3f}) is before since ({since:.3f})")
        return cls(site, drill, since, until)


def active(declared: Mapping[str, Drill], now: float) -> dict[str, str]:
    """site -> the id of the drill declared over it now. A declaration past its `until` is not
    believed. `since` is not checked: it is the runner's clock, and an agent's clock a little
    behind must not turn the first seconds of a drill into a real outage."""
    return {site: d.id for site, d in declared.items() if now <= d.until}


def covering(drilling: Mapping[str, str], sites: Iterable[str]) -> str:
    """The drill declared over any of `sites` (the first in their order), or "" for none."""
    return next((drilling[s] for s in sites if s in drilling), "")

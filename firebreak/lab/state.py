"""The lab's state on disk: what was started where, so that any later command (or a crash)
can find, check and stop exactly those processes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firebreak.lab.config import Secrets
from firebreak.lab.layout import LabLayout, make_layout
from firebreak.lab.procs import Proc

STATE_FILE = "state.json"
TOPOLOGY_FILE = "topology.yaml"
SECRETS_FILE = "secrets.json"


def lab_home() -> Path:
    home = Path(os.environ.get("FIREBREAK_HOME") or Path.cwd() / ".firebreak" / "lab").absolute()
    # resolved: when root's lab lives under /var/lib/firebreak (see runtime.reachable_home), every
    # path handed to the site processes must be the real one, which they can reach
    return home.resolve() if home.is_symlink() else home


@dataclass
class SiteState:
    power: str = "up"         # up | off
    silenced: str = "none"    # how the last power cut silenced the site's address
    isolated: str = ""        # how the site is cut off from the others, when it is
    degraded: str = ""        # how its links are degraded, when they are
    procs: list[Proc] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)      # sites whose link to this one is cut (both ends list it)
    paused: list[Proc] = field(default_factory=list)  # processes a pause stopped: heal, recover and down continue them


@dataclass
class LabState:
    lab_id: str
    net: str
    topology: str
    site_names: list[str]
    home: Path
    user: tuple[int, int] | None = None
    agents: bool = True
    sites: dict[str, SiteState] = field(default_factory=dict)
    phase: str = "starting"   # starting | up | stopping
    python: str = sys.executable  # the interpreter the site processes run with
    cluster: str = "claims-db"    # the topology's name for the lab's Patroni cluster
    estate: bool = False          # built from a topology (`lab up --topology`): its copy is home/topology.yaml
    replication: str = "sync"     # the default lab's cluster: sync (one named standby) or quorum (ANY 1)
    door: str = "caddy"           # each site's front door: caddy or haproxy
    _plan: Any = field(default=None, repr=False, compare=False)

    @property
    def plan(self):
        """What the lab runs (lab/plan.py): from the topology copied at `lab up`, or today's lab."""
        from firebreak.lab.plan import LabPlan, default_cluster, plan_lab
        from firebreak.topology import load_topology

        if self._plan is None:
            if self.estate:
                self._plan = replace(plan_lab(load_topology(self.home / TOPOLOGY_FILE, self.topology)),
                                     door=self.door)
            else:  # today's lab: one cluster in every site, all the state says
                self._plan = LabPlan(topology=self.topology, sites=tuple(self.site_names),
                                     clusters=(default_cluster(self.site_names, name=self.cluster,
                                                               replication=self.replication),), services=(),
                                     quorum=None, tools=(), estate=False, door=self.door)
        return self._plan

    @property
    def layout(self) -> LabLayout:
        return make_layout(self.home, self.net, self.site_names, self.lab_id)

    def to_json(self) -> dict:
        return {
            "lab_id": self.lab_id, "net": self.net, "topology": self.topology, "sites_order": self.site_names,
            "home": str(self.home), "user": list(self.user) if self.user else None, "agents": self.agents,
            "phase": self.phase, "python": self.python, "cluster": self.cluster, "estate": self.estate,
            "replication": self.replication, "door": self.door,
            "sites": {n: {"power": s.power, "silenced": s.silenced, "isolated": s.isolated, "degraded": s.degraded,
                          "procs": [p.as_dict() for p in s.procs], "cut": list(s.cut),
                          "paused": [p.as_dict() for p in s.paused]}
                      for n, s in self.sites.items()},
        }

    @classmethod
    def from_json(cls, d: dict) -> "LabState":
        return cls(lab_id=d["lab_id"], net=d["net"], topology=d["topology"], site_names=d["sites_order"],
                   home=Path(d["home"]), user=tuple(d["user"]) if d.get("user") else None,
                   agents=d.get("agents", True), phase=d.get("phase", "up"), python=d.get("python", sys.executable),
                   cluster=d.get("cluster", "claims-db"), estate=d.get("estate", False),
                   replication=d.get("replication", "sync"), door=d.get("door", "caddy"),
                   sites={n: SiteState(power=s["power"], silenced=s.get("silenced", "none"),
                                       isolated=s.get("isolated", ""), degraded=s.get("degraded", ""),
                                       procs=[Proc(**p) for p in s["procs"]], cut=list(s.get("cut", [])),
                                       paused=[Proc(**p) for p in s.get("paused", [])])
                          for n, s in d["sites"].items()})


def save(state: LabState) -> None:
    state.home.mkdir(parents=True, exist_ok=True)
    tmp = state.home / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    tmp.replace(state.home / STATE_FILE)


def load(home: Path | None = None) -> LabState | None:
    home = home or lab_home()
    try:
        return LabState.from_json(json.loads((home / STATE_FILE).read_text()))
    except FileNotFoundError:
        return None


def clear(home: Path) -> None:
    (home / STATE_FILE).unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a file that holds a secret: mode 0600 from its first byte (never readable by others
    even for a moment), and 0600 again if it already existed with a looser mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def save_secrets(home: Path, secrets: Secrets) -> None:
    write_private(home / SECRETS_FILE, json.dumps(secrets.as_dict()))


def load_secrets(home: Path) -> Secrets:
    return Secrets(**json.loads((home / SECRETS_FILE).read_text()))

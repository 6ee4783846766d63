"""`firebreak lab`: bring three (or more) real sites up on one machine, cut their power, bring
them back, and take everything down again, leaving nothing behind.

The public face of the lab, one import for its users (the CLI, drills, benchmarks, tests); the
work is done by role: lifecycle (up, down), faults (power, links, pauses, components), status (what is
running, its health and logs), webhooks (the apps' subscribers), over components (each process of
a site).
"""

from __future__ import annotations

# `down` is faults.down: lifecycle's, after continuing whatever a pause left stopped.
from firebreak.lab.faults import (bad_values, cut, cut_etcd, degrade, door_limit, down, heal, isolate, pause, power_off, power_on,
                                  recover, resume, rto_min, start_component, stop_component, thin_linear, uncut, undegrade,
                                  unisolate)
from firebreak.lab.lifecycle import DEFAULT_TOPOLOGY, UP_TIMEOUT, AlreadyUp, up
from firebreak.lab.status import (LOG_COMPONENTS, cluster_members, etcd_client, etcd_leader_site, etcdctl_flags,
                                  healthy, log_paths, members_view, postgres_backends, settled, settled_coordinator, status)
from firebreak.lab.webhooks import subscribe

__all__ = ["DEFAULT_TOPOLOGY", "LOG_COMPONENTS", "UP_TIMEOUT", "AlreadyUp", "bad_values", "cluster_members", "cut", "cut_etcd",
           "degrade", "door_limit", "down", "etcd_client", "etcd_leader_site", "etcdctl_flags", "heal", "healthy",
           "isolate", "log_paths", "members_view", "pause", "postgres_backends", "power_off", "power_on", "recover",
           "resume", "rto_min", "settled", "settled_coordinator", "start_component", "status", "stop_component", "subscribe", "thin_linear", "uncut",
           "undegrade", "unisolate", "up"]

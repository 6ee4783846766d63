"""systemd units as data, and their text. Pure.

Every Firebreak unit shares one hardening baseline (what an SRE would ask of any daemon that
does not need the host: a read-only system, no new privileges, no devices, no kernel knobs) and
differs only in what it must be allowed: its state directory, its runtime directory (sockets),
its user and groups, a capability to bind a low port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("SystemCallArchitectures", "native"),
    ("UMask", "0077"),
)

# Every component opens many sockets (the agent probes every site five times a second, a door
# holds up to 512 idle connections to each app, PostgreSQL a file per relation segment):
# systemd's soft default of 1024 is too low for any of them.
LIMIT_NOFILE = 65536


@dataclass(frozen=True)
class Unit:
    name: str                               # firebreak-etcd.service
    description: str
    exec_start: tuple[str, ...]             # argv: what the lab runs too
    user: str
    group: str
    doc: str = ""                           # Documentation=, when there is a page to point at
    type: str = "simple"                    # notify for daemons that speak sd_notify (etcd, Caddy, HAProxy)
    after: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    supplementary_groups: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    environment_files: tuple[str, ...] = ()
    exec_start_pre: tuple[tuple[str, ...], ...] = ()
    exec_reload: tuple[tuple[str, ...], ...] = ()
    restart: str = "on-failure"
    restart_sec: str = "1s"
    state_directory: str | None = None      # under /var/lib, owned by the unit's user
    runtime_directory: str | None = None    # under /run: sockets
    runtime_directory_mode: str = "0750"
    runtime_directory_preserve: bool = False
    logs_directory: str | None = None
    capabilities: tuple[str, ...] = ()      # ambient and bounding (CAP_NET_BIND_SERVICE for :80/:443)
    extra: tuple[tuple[str, str], ...] = ()  # anything else in [Service], in order
    comment: str = ""

    @property
    def argv(self) -> list[str]:
        return list(self.exec_start)


class Raw(str):
    """An Exec argument systemd should expand itself (`$MAINPID`): written as it is."""


MAINPID = Raw("$MAINPID")

_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./$-]+$")


def quote_arg(arg: str) -> str:
    """One argument of an Exec line as systemd reads it: `%` and `$` doubled (no specifier or
    variable is expanded), quoted when it holds a space, a quote or a backslash. A Raw argument is
    written as it is."""
    if isinstance(arg, Raw):
        return str(arg)
    s = arg.replace("%", "%%").replace("$", "$$")
    if s and _PLAIN.match(s) and s != ";":
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: Sequence[str]) -> str:
    return " ".join(quote_arg(a) for a in argv)


def unit_text(u: Unit) -> str:
    lines = []
    if u.comment:
        lines += [f"# {line}" if line else "#" for line in u.comment.splitlines()]
    lines += ["# Written by `firebreak deploy render` (docs/DEPLOY.md); render again rather than editing it.",
              "[Unit]", f"Description={u.description}"] + ([f"Documentation={u.doc}"] if u.doc else [])
    after = ("network-online.target",) + u.after
    wants = ("network-online.target",) + u.wants
    lines += [f"After={' '.join(after)}", f"Wants={' '.join(wants)}",
              # A crash loop is retried every RestartSec, forever: a site's daemon must come back
              # by itself whenever it can, not give up after five tries in ten seconds.
              "StartLimitIntervalSec=0", "", "[Service]", f"Type={u.type}", f"User={u.user}", f"Group={u.group}"]
    if u.supplementary_groups:
        lines.append(f"SupplementaryGroups={' '.join(u.supplementary_groups)}")
    for k, v in u.environment:
        lines.append(f"Environment={quote_arg(f'{k}={v}')}")
    for f in u.environment_files:
        lines.append(f"EnvironmentFile={f}")
    for pre in u.exec_start_pre:
        lines.append(f"ExecStartPre={exec_line(pre)}")
    lines.append(f"ExecStart={exec_line(u.exec_start)}")
    for rel in u.exec_reload:
        lines.append(f"ExecReload={exec_line(rel)}")
    lines += [f"Restart={u.restart}", f"RestartSec={u.restart_sec}", f"LimitNOFILE={LIMIT_NOFILE}"]
    for k, v in u.extra:
        lines.append(f"{k}={v}")
    if u.state_directory:
        lines += [f"StateDirectory={u.state_directory}", "StateDirectoryMode=0700"]
    if u.runtime_directory:
        lines += [f"RuntimeDirectory={u.runtime_directory}", f"RuntimeDirectoryMode={u.runtime_directory_mode}"]
        if u.runtime_directory_preserve:
            lines.append("RuntimeDirectoryPreserve=yes")
    if u.logs_directory:
        lines += [f"LogsDirectory={u.logs_directory}", "LogsDirectoryMode=0750"]
    if u.capabilities:
        caps = " ".join(u.capabilities)
        lines += [f"AmbientCapabilities={caps}", f"CapabilityBoundingSet={caps}"]
    else:
        lines.append("CapabilityBoundingSet=")
    lines += [f"{k}={v}" for k, v in HARDENING]
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"

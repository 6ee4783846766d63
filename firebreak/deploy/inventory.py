"""The inventory: which hosts make up the estate, in which site, at what address, running what.

Read once, checked whole, then typed: every problem in the file is reported at once, one line
each, naming the field (InputError, exit 2), before anything is rendered or written.

    topology: estate.yaml            # optional; path relative to the inventory; default: one cluster
    sites:
      gwangju:
        hosts:
          gj-db1:  {address: 10.10.0.11, roles: [etcd, postgres, agent, db-door]}
          gj-web1: {address: 10.10.0.21, roles: [door, claims]}

Everything else has a default (ports, binaries, directories: `Settings` below) and may be set
under `settings:`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from firebreak.control.keys import PATRONI_SCOPE
from firebreak.deploy.components import DOOR_CONNECTIONS_PER_SOURCE
from firebreak.errors import InputError, Problem
from firebreak.inputs import Lines, bad_name, field_path, load_yaml_model
from firebreak.topology import Kind, Replication, load_topology

if TYPE_CHECKING:
    from firebreak.claims.subscribers import Webhooks

ROLES = ("etcd", "postgres", "agent", "door", "db-door", "claims")
Role = Literal["etcd", "postgres", "agent", "door", "db-door", "claims"]
MIN_SITES = 3          # two sites cannot tell a dead site from a cut link (the agent refuses fewer)
PORT_STRIDE = 10       # cluster k's PostgreSQL, Patroni and door ports: the first's + k * PORT_STRIDE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HostSpec(_Strict):
    address: str = Field(description="the host's address other sites reach it on (an IP address: it goes "
                                     "into certificates and etcd's peer URLs)")
    roles: list[Role] = Field(min_length=1)


class SiteSpec(_Strict):
    hosts: dict[str, HostSpec] = Field(min_length=1)


class Ports(_Strict):
    etcd: int = Field(2379, gt=0, lt=65536)
    etcd_peer: int = Field(2380, gt=0, lt=65536)
    etcd_metrics: int = Field(2381, gt=0, lt=65536, description="etcd's plain listener for probes and metrics")
    postgres: int = Field(5432, gt=0, lt=65536)
    patroni: int = Field(8008, gt=0, lt=65536)
    db_door: int = Field(5433, gt=0, lt=65536)
    db_door_ro: int = Field(5434, gt=0, lt=65536)
    door: int = Field(80, gt=0, lt=65536)
    door_tls: int = Field(443, gt=0, lt=65536)
    console: int = Field(8090, gt=0, lt=65536)
    claims: int = Field(8080, gt=0, lt=65536)
    claims_admin: int = Field(8081, gt=0, lt=65536, description="the claims service's admin listener: the "
                              "agent's hooks and /metrics; firewall it from the public")


class Binaries(_Strict):
    """Where each program lives on the hosts (docs/DEPLOY.md says where each comes from)."""
    venv: str = Field("/opt/firebreak/venv", description="Firebreak's virtualenv: bin/firebreak, bin/python")
    etcd: str = "/usr/local/bin/etcd"
    patroni: str = "/opt/firebreak/venv/bin/patroni"
    pg_bin_dir: str = "/usr/lib/postgresql/18/bin"
    haproxy: str = "/usr/sbin/haproxy"
    caddy: str = "/usr/bin/caddy"


class EtcdTuning(_Strict):
    heartbeat_ms: int = Field(100, ge=10, le=5000, description="etcd's --heartbeat-interval: about the round "
                                                               "trip between sites, or more")
    election_ms: int = Field(1000, ge=100, le=50000, description="etcd's --election-timeout: 10x the heartbeat")
    # Off by default: a compromised agent host must not hold etcd's root (issue 30); `firebreak pki`
    # refuses to issue root to a host. On, the agents defragment and move etcd's leader themselves.
    admin_on_agents: bool = Field(False, description="give each agent etcd's root, for defragmenting and moving "
                                                     "the raft leader (docs/DEPLOY.md: what is lost without it)")


class ClaimsSettings(_Strict):
    webhooks: str | None = Field(None, description="the operator's webhook subscribers file (docs/PUBLIC-RECORD.md), "
                                 "relative to the inventory: every claims host gets it, each subscriber's secret in "
                                 "a file of its own (0600)")


class DoorSettings(_Strict):
    kind: Literal["caddy", "haproxy"] = Field(
        "caddy", description="the front door's proxy: caddy, or haproxy (Debian's package; a quarter of Caddy's "
                             "CPU per request, docs/BENCHMARKS.md \"Claims intake\")")
    connections_per_source: int = Field(
        DOOR_CONNECTIONS_PER_SOURCE, ge=1, le=1_000_000,
        description="open connections one source address (an IPv6 /64) may hold to a front door; the kernel "
                    "drops new ones over it (/etc/firebreak/door-limit.nft). Raise it where many people share "
                    "one address (a carrier's NAT, an office)")


class SettingsSpec(_Strict):
    ports: Ports = Field(default_factory=Ports)
    binaries: Binaries = Field(default_factory=Binaries)
    etcd: EtcdTuning = Field(default_factory=EtcdTuning)
    scope: str = Field(PATRONI_SCOPE, description="without a topology: the one cluster's Patroni scope")
    client_networks: list[str] = Field(default_factory=list, description="networks PostgreSQL accepts clients "
                                       "and replication from (pg_hba); default: the hosts that need it, each /32")
    claims: ClaimsSettings = Field(default_factory=ClaimsSettings)
    door: DoorSettings = Field(default_factory=DoorSettings)


class InventorySpec(_Strict):
    topology: str | None = None
    sites: dict[str, SiteSpec] = Field(min_length=1)
    settings: SettingsSpec = Field(default_factory=SettingsSpec)


# ---- the typed inventory ------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    name: str
    site: str
    address: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Site:
    name: str
    hosts: tuple[Host, ...]

    def one(self, role: str) -> Host | None:
        """The host running `role` in this site (the inventory allows at most one), or None."""
        return next((h for h in self.hosts if h.has(role)), None)


@dataclass(frozen=True)
class Cluster:
    """One Patroni cluster: its scope, where it has members and where it bootstraps."""
    scope: str
    index: int
    sites: tuple[str, ...]
    primary: str
    sync: bool | str                  # Patroni's synchronous_mode: True, False or "quorum"
    doors: bool                       # its clients go through the sites' database doors
    dbname: str = "claims"
    app_user: str = "claims"

    def port(self, ports: Ports, name: str) -> int:
        return getattr(ports, name) + self.index * PORT_STRIDE


@dataclass(frozen=True)
class Inventory:
    source: str
    sites: tuple[Site, ...]
    clusters: tuple[Cluster, ...]
    settings: SettingsSpec
    estate: bool = False              # built from a topology (several clusters, no claims app assumed)
    notes: tuple[str, ...] = field(default=())
    webhooks: "Webhooks | None" = None  # settings.claims.webhooks, read and checked (its secrets too)

    @property
    def ports(self) -> Ports:
        return self.settings.ports

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    @property
    def hosts(self) -> list[Host]:
        return [h for s in self.sites for h in s.hosts]

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)

    def own_first(self, site: str) -> list[Site]:
        return [self.site(site)] + [s for s in self.sites if s.name != site]

    @property
    def door_clusters(self) -> tuple[Cluster, ...]:
        return tuple(c for c in self.clusters if c.doors)


def load_inventory(path: Path | str) -> Inventory:
    """Read and check an inventory file; InputError naming every problem at once."""
    path = Path(path)
    label = str(path)
    spec, lines = load_yaml_model(path, InventorySpec, label)
    return build_inventory(spec, label, lines, base=path.parent)


def build_inventory(spec: InventorySpec, label: str, lines: "Lines | dict[tuple, int]" = {},
                    base: Path | None = None) -> Inventory:
    problems: list[Problem] = []

    def bad(at: tuple, reason: str) -> None:
        problems.append(Problem(label, field_path(at), reason, lines.get(at)))

    if len(spec.sites) < MIN_SITES:
        bad(("sites",), f"{len(spec.sites)} site(s); at least {MIN_SITES} are needed to tell a dead site from a cut "
                        "link (a majority must survive the loss of any one)")
    seen_hosts: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    for site_name, site in spec.sites.items():
        at = ("sites", site_name)
        if bad_name(site_name):
            bad(at, f"site name {bad_name(site_name)}")
        for host_name, host in site.hosts.items():
            hat = at + ("hosts", host_name)
            if bad_name(host_name):
                bad(hat, f"host name {bad_name(host_name)}")
            if host_name in seen_hosts:
                bad(hat, f"host '{host_name}' is also in site '{seen_hosts[host_name]}'; host names are directory "
                         "names of the output, one per host")
            seen_hosts.setdefault(host_name, site_name)
            try:
                address = str(ipaddress.ip_address(host.address))
            except ValueError:
                bad(hat + ("address",), f"{host.address!r} is not an IP address (it goes into certificates and "
                                        "etcd's peer URLs)")
                address = host.address
            if address in seen_addresses:
                bad(hat + ("address",), f"{address} is also the address of host '{seen_addresses[address]}'")
            seen_addresses.setdefault(address, host_name)
            for i, role in enumerate(host.roles):
                if role in host.roles[:i]:
                    bad(hat + ("roles", i), f"role '{role}' is listed twice")
        _check_site_roles(site_name, site, bad)

    clusters, estate = _clusters(spec, label, base, bad)
    _check_clusters(spec, clusters, bad)
    webhooks = _webhooks(spec, base, bad)
    if problems:
        raise InputError(problems)

    sites = tuple(Site(name, tuple(Host(h, name, str(ipaddress.ip_address(spec_h.address)), frozenset(spec_h.roles))
                                   for h, spec_h in s.hosts.items()))
                  for name, s in spec.sites.items())
    inv = Inventory(source=label, sites=sites, clusters=clusters, settings=spec.settings, estate=estate,
                    webhooks=webhooks)
    return dataclasses.replace(inv, notes=tuple(_notes(inv)))


def _webhooks(spec: InventorySpec, base: Path | None, bad) -> "Webhooks | None":
    """The subscribers file the claims hosts get, checked as the service checks it at start (its
    URLs, each secret file's mode and length), so a bad one stops the render, not a site's service."""
    if spec.settings.claims.webhooks is None:
        return None
    from firebreak.claims.subscribers import load_webhooks

    at = ("settings", "claims", "webhooks")
    try:
        webhooks = load_webhooks((base or Path(".")) / spec.settings.claims.webhooks)
    except InputError as e:
        for p in e.problems:
            bad(at, f"{p}")
        return None
    for i, s in enumerate(webhooks.subscribers):
        try:
            s.secret.decode("utf-8")
        except UnicodeDecodeError:
            bad(at, f"subscriber {i + 1} ({s.url}): its secret is not text; make it with `openssl rand -hex 32`")
            return None
    return webhooks


# Roles a site must run exactly once (the agents know one of each per site), at most once, or any.
_EXACTLY_ONE = {
    "etcd": "one etcd member per site: the quorum survives the loss of any one site",
    "agent": "one agent per site: it speaks for its site (its view, its etcd user agent-<site>)",
    "postgres": "one PostgreSQL member per site: the agents know one Patroni per site",
}
_AT_MOST_ONE = ("door", "db-door", "claims")


def _check_site_roles(site_name: str, site: SiteSpec, bad) -> None:
    at = ("sites", site_name, "hosts")
    for role, why in _EXACTLY_ONE.items():
        holders = [h for h, spec in site.hosts.items() if role in spec.roles]
        if not holders:
            bad(at, f"site '{site_name}' has no {role} host; give one host the role '{role}' ({why})")
        elif len(holders) > 1:
            bad(at + (holders[1], "roles"), f"'{role}' is also on host '{holders[0]}' in site '{site_name}'; {why}")
    for role in _AT_MOST_ONE:
        holders = [h for h, spec in site.hosts.items() if role in spec.roles]
        if len(holders) > 1:
            bad(at + (holders[1], "roles"), f"'{role}' is also on host '{holders[0]}' in site '{site_name}'; one per "
                                            "site (the agents know one per site)")
    if not any(r in spec.roles for spec in site.hosts.values() for r in ("claims", "door")):
        bad(at, f"site '{site_name}' has neither a claims nor a door host; the agents probe each site's service "
                "through one of them")


def _clusters(spec: InventorySpec, label: str, base: Path | None, bad) -> tuple[tuple[Cluster, ...], bool]:
    sites = list(spec.sites)
    if spec.topology is None:
        if bad_name(spec.settings.scope):
            bad(("settings", "scope"), f"scope {bad_name(spec.settings.scope)}")
        return (Cluster(scope=spec.settings.scope, index=0, sites=tuple(sites), primary=sites[0] if sites else "",
                        sync=True, doors=True),), False
    path = (base or Path(".")) / spec.topology
    try:
        topo = load_topology(path)
    except InputError as e:
        for p in e.problems:
            bad(("topology",), f"{p}")
        return (), True
    if set(topo.sites) != set(sites):
        missing = [s for s in topo.sites if s not in sites]
        extra = [s for s in sites if s not in topo.sites]
        bad(("topology",), f"{path} declares sites {', '.join(topo.sites)}; the inventory has "
                           f"{', '.join(sites)}" + (f" (no hosts for {', '.join(missing)})" if missing else "")
            + (f" (not in the topology: {', '.join(extra)})" if extra else ""))
    databases = [s for s in topo.services.values() if s.kind == Kind.DATABASE]
    if not databases:
        bad(("topology",), f"{path} declares no database (kind: database): nothing for Patroni to run")
    clusters = []
    for i, db in enumerate(databases):
        if bad_name(db.name):
            bad(("topology",), f"database {bad_name(db.name)}")
        members = tuple([db.primary or db.sites()[0]] + [s for s in sites if s in db.sites() and s != db.primary])
        clusters.append(Cluster(scope=db.name, index=i, sites=members, primary=members[0],
                                sync=_SYNCHRONOUS_MODE[db.replication], doors=db.doors, dbname="estate",
                                app_user="estate"))
    return tuple(clusters), True


# A database's replication as Patroni's synchronous_mode: quorum commit is Patroni 4's "quorum"
# (a commit on ANY one standby), as the lab runs it (lab/plan.py ClusterPlan.synchronous_mode).
_SYNCHRONOUS_MODE: dict[Replication, bool | str] = {Replication.SYNC: True, Replication.QUORUM: "quorum",
                                                    Replication.ASYNC: False}


def _check_clusters(spec: InventorySpec, clusters: tuple[Cluster, ...], bad) -> None:
    door_sites = [s for s, site in spec.sites.items() if any("db-door" in h.roles for h in site.hosts.values())]
    if door_sites and clusters and not any(c.doors for c in clusters):
        bad(("sites", door_sites[0], "hosts"), "a host has the role 'db-door' but no database declares doors: true "
                                               "in the topology; remove the role or declare the doors")
    for c in clusters:
        if c.sync and len(c.sites) < 2:
            bad(("topology",), f"database '{c.scope}' is synchronous with members in {len(c.sites)} site(s); "
                               "it needs two")


def _notes(inv: Inventory) -> list[str]:
    """What the inventory allows but an operator should know (printed by `deploy render`)."""
    out = []
    for site in inv.sites:
        agent = site.one("agent")
        for role, what in (("door", "front door (Caddy)"), ("db-door", "database door (HAProxy)")):
            host = site.one(role)
            if host is not None and agent is not None and host is not agent:
                out.append(f"{site.name}: the {what} on {host.name} runs without its agent (on {agent.name}): its "
                           "admin socket is local to its host, so it follows its own health checks only, and "
                           "evacuations do not reach it; put 'agent' on the same host to let the agent steer it")
        if inv.door_clusters and site.one("db-door") is None:
            out.append(f"{site.name}: no db-door host; clients in this site reach the databases directly")
    return out

"""The agent's configuration file. The agent knows nothing about the lab: the same file format
describes three hosts in three real data centers (see docs/DEPLOY.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from firebreak.control.door import DoorTLS
from firebreak.control.etcd import OPEN, TXN_OPS, EtcdAccess
from firebreak.control.keys import PREFIX, Keys, PatroniKeys
from firebreak.errors import InputError, Problem
from firebreak.inputs import bad_name, load_yaml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _url(value: str, port: bool = True) -> str:
    """An http(s) URL with a host (and, for what the agent dials, a port), kept as written: the
    agent appends paths to it. Checked here, at load, so a bad file stops with the field named
    instead of a traceback from the first loop that dials it."""
    try:
        parts = urlsplit(value)
        given = parts.port  # a port that is no number, or out of range, raises here
    except ValueError as e:
        raise ValueError(f"{value!r} is not a URL ({e}); write it like http://10.0.0.5:8080") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} needs http:// or https:// and a host, like http://10.0.0.5:8080")
    if port and given is None:
        raise ValueError(f"{value!r} needs a port, like http://10.0.0.5:8080")
    return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} needs an address and a port, like 10.0.0.5:8090")
    return value


def _unix_socket(value: str) -> str:
    if not value.startswith("unix/") or not value.removeprefix("unix/"):
        raise ValueError(f"{value!r} must be a unix socket (unix//path): HAProxy's runtime API has no "
                         "authentication of its own")
    return value


def _admin(value: str) -> str:
    return value if value.startswith("unix/") else _url(value)


# What the agent dials (etcd, Patroni, the apps, the other agents): a URL with a port.
Endpoint = Annotated[str, AfterValidator(_url)]
# A public URL as clients know it (a front door): the scheme's port will do.
PublicUrl = Annotated[str, AfterValidator(lambda v: _url(v, port=False))]
# Where a server of this site listens: ADDR:PORT.
HostPort = Annotated[str, AfterValidator(_host_port)]


class SiteEndpoints(_Strict):
    etcd: Endpoint
    patroni: Endpoint
    app: Endpoint
    agent: Endpoint
    member: str | None = None  # Patroni member name in this site (default: the site's name)
    # What the detector dials to see that the site's etcd runs: etcd's plain --listen-metrics-urls
    # listener. Without it, the client port: a TLS one logs every bare probe as a rejected handshake.
    etcd_probe: Endpoint | None = None
    door: PublicUrl | None = None    # the site's public front door, as clients know it
    # The app's admin listener (its FIREBREAK_ADMIN_BIND), where the public door does not forward:
    # releases and "primary moved" are pushed there. Without it, to `app` (an app with one listener).
    app_admin: Endpoint | None = None

    @property
    def admin_url(self) -> str:
        return self.app_admin or self.app


class DoorSettings(_Strict):
    kind: Literal["caddy", "haproxy"] = Field(
        default="caddy", description="the door's proxy: caddy (its admin API) or haproxy (its runtime API; "
                                     "a quarter of Caddy's CPU per request, docs/BENCHMARKS.md)")
    listen: HostPort = Field(description="ADDR:PORT the door serves clients on")
    admin: Annotated[str, AfterValidator(_admin)] = Field(
        description="the door's admin API: Caddy's at unix//path/to/socket (only its user can open it) or a "
                    "loopback URL; HAProxy's runtime socket at unix//path/to/socket")
    tls_listen: HostPort | None = Field(default=None, description="ADDR:PORT the door serves HTTPS on")
    tls_cert: str | None = Field(default=None, description="the door's certificate (PEM), for tls_listen")
    tls_key: str | None = Field(default=None, description="its key (PEM, mode 0600)")

    @model_validator(mode="after")
    def _tls_complete(self) -> "DoorSettings":
        given = [self.tls_listen, self.tls_cert, self.tls_key]
        if any(given) and not all(given):
            raise ValueError("door: tls_listen, tls_cert and tls_key go together")
        if self.kind == "haproxy" and not self.admin.startswith("unix/"):
            raise ValueError(f"door.admin: HAProxy's runtime API is a unix socket (unix//path/to/socket), "
                             f"not {self.admin!r}")
        return self

    @property
    def tls(self) -> DoorTLS | None:
        return DoorTLS(self.tls_listen, self.tls_cert, self.tls_key) if self.tls_listen else None


class DoorPorts(_Strict):
    port: int = Field(gt=0, lt=65536, description="read-write port: the cluster's current primary")
    read_only_port: int | None = Field(default=None, gt=0, lt=65536, description="its living standbys")


class DbDoorSettings(_Strict):
    admin: Annotated[str, AfterValidator(_unix_socket)] = Field(
        description="the database door's (HAProxy's) runtime API: unix//path/to/socket, its `stats socket ... "
                    "level admin`, which only the agent's user can open")
    host: str = Field(description="the address clients reach the door on")
    port: int = Field(gt=0, lt=65536, description="read-write port: the current primary")
    read_only_port: int | None = Field(default=None, gt=0, lt=65536, description="living standbys")
    clusters: dict[str, DoorPorts] = Field(default_factory=dict, description="with many clusters: each "
                                           "cluster's (scope's) ports on this door; port and read_only_port are "
                                           "then the first cluster's")

    def ports(self, default_scope: str) -> dict[str, DoorPorts]:
        """scope -> its ports on this door."""
        return dict(self.clusters) or {default_scope: DoorPorts(port=self.port, read_only_port=self.read_only_port)}

    @property
    def socket_path(self) -> str:
        return self.admin.removeprefix("unix/")  # a unix socket: checked at load


class ServiceSettings(_Strict):
    """A service of the estate, as the agents know it: where its instances run, what it needs."""
    sites: dict[str, Endpoint] = Field(description="site -> URL of the service's instance there")
    databases: list[str] = Field(default_factory=list, description="the clusters (scopes) it writes to")
    calls: list[str] = Field(default_factory=list, description="the services it calls")


class DetectorSettings(_Strict):
    """How fast a dead site is found, against how often a living one is wrongly voted dead:
    docs/BENCHMARKS.md ("Detector settings") measures both for each setting; choose from there.
    The default is the table's sub-second row (writes back 0.86-0.89 s p50, 1.03-1.15 s p99 after
    a power cut; no false dead verdict and no failover in two hours of stress, run 11), bought
    with twice the probe rounds:
    0.2/0.2/1.0/1.5, the row before it (1.38-1.45 s, 1.60-1.68 s), costs the agents and etcd a
    third less CPU."""
    probe_interval: float = Field(0.1, gt=0, le=5)
    probe_timeout: float = Field(0.1, gt=0, le=5)
    window: float = Field(0.5, gt=0, le=60)
    fresh: float = Field(0.75, gt=0, le=60)
    view_lease_ttl: int = Field(3, ge=2, le=60)
    coordinator_lease_ttl: int = Field(3, ge=2, le=60)

    @field_validator("probe_timeout", "window", "fresh")
    @classmethod
    def _honourable(cls, value: float, info: ValidationInfo) -> float:
        """A combination the detector cannot honour (detector.settings_problems) is refused at
        load, naming the field: settings validated after this one are taken as no constraint."""
        from firebreak.control.detector import settings_problems

        d = {"probe_timeout": 0.0, "window": math.inf, "fresh": math.inf, **info.data, info.field_name: value}
        if "probe_interval" not in d:
            return value  # the interval itself was refused: that is the problem to report
        for name, reason in settings_problems(d["probe_interval"], d["probe_timeout"], d["window"], d["fresh"]):
            if name == info.field_name:
                raise ValueError(reason)
        return value


class AgentConfig(_Strict):
    site: str
    listen: HostPort = Field(description="ADDR:PORT for the console and API")
    sites: dict[str, SiteEndpoints]
    etcd: list[Endpoint] = Field(min_length=1, description="etcd client URLs, this site's first")
    patroni_namespace: str = Field(default=PatroniKeys().namespace, description="one cluster: its path "
                                   "(Patroni's namespace and scope)")
    # At most TXN_OPS - 4: every tick reads each as a range at one revision (Etcd.get_ranges),
    # beside the views and the coordination span, sent at once; the bound, set when the tick
    # read them in one transaction (etcd's --max-txn-ops, 128), keeps a tick's requests bounded.
    patroni_namespaces: list[str] = Field(default_factory=list, max_length=TXN_OPS - 4,
                                          description="many clusters: Patroni namespaces (such as /service/) "
                                          "under which every cluster found is protected")
    members: dict[str, str] = Field(default_factory=dict, description="Patroni member name -> site, for members "
                                    "not named after their site whose addresses do not say it either")
    prefix: str = PREFIX
    etcd_access: str | None = Field(default=None, description="a locked etcd: this agent's access file (JSON: ca, "
                                    "cert, key, user, password_file); none for an open etcd")
    etcd_ops_access: str | None = Field(default=None, description="a locked etcd: the operators' (ops role's) "
                                        "access file, used by the console only, for the writes it makes on an "
                                        "authenticated operator's behalf (frozen, drained, releases, operators, "
                                        "the audit log); without it the console refuses operators' actions")
    etcd_admin_access: str | None = Field(default=None, description="etcd's root, for defragmenting and placing "
                                          "the raft leader only; without it the agents do neither")
    etcd_quota_bytes: int = Field(default=2 * 2**30, gt=0, description="etcd's --quota-backend-bytes, for warnings")
    patroni_user: str = Field(default="", description="Patroni REST API user for switchovers")
    patroni_password: str = ""
    patroni_password_file: str | None = Field(default=None, description="instead of patroni_password: a file "
                                              "holding it (mode 0600; a path relative to this file's directory)")
    app_admin_token: str = Field(default="", description="lets the agent push releases to its site's app, and tell "
                                 "it when writes leave the primary it may hold connections to")
    app_admin_token_file: str | None = Field(default=None, description="instead of app_admin_token: a file "
                                             "holding it (mode 0600; a path relative to this file's directory)")
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    door: DoorSettings | None = Field(default=None, description="this site's front door, configured by the agent")
    db_door: DbDoorSettings | None = Field(default=None, description="this site's database door, steered by the agent")
    services: dict[str, ServiceSettings] = Field(default_factory=dict, description="the estate's services: the "
                                                 "front door serves each at /s/<name>/; the console lists them")

    @model_validator(mode="after")
    def _known_site(self) -> "AgentConfig":
        for name in [self.site, *self.sites]:
            if bad_name(name):
                raise ValueError(f"site name {bad_name(name)}")
        if self.site not in self.sites:
            raise ValueError(f"site '{self.site}' is not among sites ({', '.join(self.sites)})")
        for member, site in self.members.items():
            if site not in self.sites:
                raise ValueError(f"members.{member}: unknown site '{site}'")
        for name, svc in self.services.items():
            if bad_name(name):
                raise ValueError(f"services.{name}: service name {bad_name(name)}")
            for site in svc.sites:
                if site not in self.sites:
                    raise ValueError(f"services.{name}.sites: unknown site '{site}'")
        if len(self.sites) < 3:
            raise ValueError("at least 3 sites are needed to tell a dead site from a cut link")
        for name in SECRET_FILES:
            if getattr(self, name) and getattr(self, f"{name}_file"):
                raise ValueError(f"give {name} or {name}_file, not both")
        return self

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @property
    def patroni_keys(self) -> PatroniKeys:
        return PatroniKeys(self.patroni_namespace)

    @property
    def default_scope(self) -> str:
        return self.patroni_namespace.rstrip("/").rsplit("/", 1)[-1]

    def access(self, admin: bool = False) -> EtcdAccess:
        path = self.etcd_admin_access if admin else self.etcd_access
        return EtcdAccess.from_file(path) if path else OPEN

    def ops_access(self) -> EtcdAccess | None:
        """The console's identity for operators' writes: the ops role's file; against an open etcd
        (no etcd_access) there are no identities and the agent's own will do; None when a locked
        etcd has none configured (the console then refuses operators' actions)."""
        if self.etcd_ops_access:
            return EtcdAccess.from_file(self.etcd_ops_access)
        return OPEN if not self.etcd_access else None

    def member_of(self, site: str) -> str:
        return self.sites[site].member or site

    @property
    def site_of_member(self) -> dict[str, str]:
        return {**{self.member_of(s): s for s in self.sites}, **self.members}


# Secrets the agent's file may hold inline or, better, name a file for (`<name>_file`), so that
# agent.yml itself holds none.
SECRET_FILES = ("patroni_password", "app_admin_token")


def load_agent_config(path: Path | str) -> AgentConfig:
    """The agent's file, with any secret it names by file read in (the file must be its owner's
    alone: a secret others can read may already be known)."""
    cfg, lines = load_yaml_model(path, AgentConfig)
    found = {}
    for name in SECRET_FILES:
        given = getattr(cfg, f"{name}_file")
        if given:
            found[name] = _read_secret(Path(path).parent / given, str(path), f"{name}_file",
                                       lines.get((f"{name}_file",)))
    return cfg.model_copy(update=found) if found else cfg


def _read_secret(file: Path, label: str, field: str, line: int | None) -> str:
    try:
        mode = file.stat().st_mode & 0o777
        text = file.read_text().strip()
    except OSError as e:
        raise InputError(Problem(label, field, f"{file}: cannot read it ({e.strerror}); it should hold the "
                                               "secret alone, readable by the agent's user only", line)) from None
    if mode & 0o077:
        raise InputError(Problem(label, field, f"{file}: mode {mode:04o} lets other users read this secret; "
                                               f"`chmod 600 {file}` (and consider changing it)", line))
    if not text:
        raise InputError(Problem(label, field, f"{file} is empty; it should hold the secret on one line", line))
    return text

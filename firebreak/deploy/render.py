"""Inventory and secrets in, every host's files out: a pure function, `render`.

`render(inventory, secrets)` returns {"<host>/<path on that host>": RenderedFile(content, mode)};
the CLI only writes them. Each host gets what its roles need, ready for `/`:

    etc/systemd/system/firebreak-<component>.service   a unit per component (units.py)
    etc/firebreak/etcd.yml                              etcd's configuration (`etcd --config-file`)
    etc/firebreak/patroni/<scope>/patroni.yml           Patroni's, one per cluster with a member here
    etc/firebreak/haproxy.cfg                           the database door's
    etc/firebreak/caddy.json                            the front door's
    etc/firebreak/agent.yml                             the agent's (its secrets in files, below)
    etc/firebreak/claims.env                            the claims service's settings
    etc/firebreak/webhooks.yml                          its webhook subscribers (settings.claims.webhooks),
                                                        each secret in secrets/webhooks/<n>.secret
    etc/firebreak/secrets/*                             secrets, 0600: Patroni's, the agent's, the claims
                                                        service's
    etc/firebreak/etcd/<role>/{access.json,password}    each etcd user this host acts as
    etc/sysusers.d/firebreak.conf                       the users the units run as
    etc/tmpfiles.d/firebreak.conf                       owner and mode of every file above, and of
                                                        the certificates (`systemd-tmpfiles --create`)

Certificates and keys are referenced, not made here (`firebreak pki` makes them): /etc/firebreak/pki/
(ca.pem, peer-ca.pem, etcd-member, etcd-peer, etcd-token, door) and
/etc/firebreak/etcd/<role>/client{,-key}.pem.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import yaml

from firebreak.control.dbdoor import ClusterDoor
from firebreak.control.door import DoorTLS
from firebreak.control.keys import OPS_ROLE, agent_role
from firebreak.deploy import components as c
from firebreak.deploy.inventory import Cluster, Host, Inventory
from firebreak.deploy.secrets import ROOT_ROLE, DeploySecrets
from firebreak.deploy.units import MAINPID, Unit, unit_text

if TYPE_CHECKING:
    from firebreak.claims.subscribers import Webhooks

ETC = "/etc/firebreak"
PKI = f"{ETC}/pki"
CA = f"{PKI}/ca.pem"
PEER_CA = f"{PKI}/peer-ca.pem"        # signs etcd members' peer certificates only (firebreak/pki/plan.py)
SECRETS = f"{ETC}/secrets"
WEBHOOKS = f"{ETC}/webhooks.yml"
UNITS = "/etc/systemd/system"
SYSCTL = "/etc/sysctl.d/90-firebreak.conf"  # the host's kernel settings (components.kernel_settings)

# Who runs what. Debian's packages create haproxy, postgres and (Caddy's) caddy; sysusers.d
# creates whichever is missing.
USERS = {"etcd": "etcd", "postgres": "postgres", "db-door": "haproxy", "door": "caddy", "agent": "firebreak",
         "claims": "firebreak-claims"}
USER_HOMES = {"etcd": "/var/lib/firebreak-etcd", "postgres": "/var/lib/postgresql", "haproxy": "/nonexistent",
              "caddy": "/var/lib/firebreak-door", "firebreak": "/nonexistent", "firebreak-claims": "/nonexistent"}

def role_user(inv: Inventory, role: str) -> str:
    """The user a role's unit runs as: USERS, but a front door on HAProxy runs as haproxy."""
    return "haproxy" if role == "door" and inv.settings.door.kind == "haproxy" else USERS[role]


def door_key(inv: Inventory) -> str:
    """The front door's HTTPS key. HAProxy finds a key that is not in the certificate's file at
    that file's name plus `.key` (its `ssl-load-extra-files`): that is where `firebreak pki` puts
    it for an HAProxy door."""
    return f"{PKI}/door.pem.key" if inv.settings.door.kind == "haproxy" else f"{PKI}/door-key.pem"


# Sockets: each door's admin socket lives in its own runtime directory (created at start,
# removed at stop, so a power cut never leaves one behind), open to its daemon's group, which
# the agent joins.
DOOR_RUN = "/run/firebreak-door"
DOOR_ADMIN = f"{DOOR_RUN}/admin.sock"
DB_DOOR_RUN = "/run/firebreak-db-door"
DB_DOOR_ADMIN = f"{DB_DOOR_RUN}/admin.sock"
AGENT_PATRONI_PASSWORD = f"{SECRETS}/agent-patroni-password"
AGENT_APP_ADMIN_TOKEN = f"{SECRETS}/agent-app-admin-token"


@dataclass(frozen=True)
class RenderedFile:
    content: str
    mode: int = 0o644
    owner: str = "root"

    @property
    def secret(self) -> bool:
        return self.mode & 0o077 == 0


def access_dir(role: str) -> str:
    return f"{ETC}/etcd/{role}"


def role_owner(role: str) -> str:
    """The user that acts as an etcd role on its hosts."""
    return {"patroni": USERS["postgres"], "claims": USERS["claims"]}.get(role, USERS["agent"])


def unit_name(component: str, scope: str | None = None) -> str:
    return f"firebreak-{component}{'-' + scope if scope else ''}.service"


# ---- endpoints ----------------------------------------------------------------------------------

def _url(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _etcd_host(inv: Inventory, site: str) -> Host:
    return inv.site(site).one("etcd")  # type: ignore[return-value]  # the inventory checked: one per site


def etcd_client_urls(inv: Inventory, own: str) -> list[str]:
    return [_url("https", _etcd_host(inv, s.name).address, inv.ports.etcd) for s in inv.own_first(own)]


def site_endpoints(inv: Inventory) -> dict[str, dict[str, str]]:
    """What the agents dial in each site (control/config.py SiteEndpoints)."""
    p, first = inv.ports, inv.clusters[0]
    out = {}
    for site in inv.sites:
        etcd, pg, agent = site.one("etcd"), site.one("postgres"), site.one("agent")
        claims, door = site.one("claims"), site.one("door")
        app = _url("http", claims.address, p.claims) if claims else _url("http", door.address, p.door)
        e = {"etcd": _url("https", etcd.address, p.etcd), "etcd_probe": _url("http", etcd.address, p.etcd_metrics),
             "patroni": _url("http", pg.address, first.port(p, "patroni")), "app": app,
             "agent": _url("http", agent.address, p.console)}
        if door:
            e["door"] = _url("http", door.address, p.door)
        if claims:
            e["app_admin"] = _url("http", claims.address, p.claims_admin)
        out[site.name] = e
    return out


def client_networks(inv: Inventory) -> tuple[str, ...]:
    """Who may connect to PostgreSQL: the networks the inventory names, or each host that needs
    to (members replicate, the database doors proxy, the claims service writes), alone."""
    if inv.settings.client_networks:
        return tuple(inv.settings.client_networks)
    nets = []
    for h in inv.hosts:
        if h.roles & {"postgres", "db-door", "claims"}:
            ip = ipaddress.ip_address(h.address)
            nets.append(f"{ip}/{32 if ip.version == 4 else 128}")
    return tuple(nets)


# ---- per component ------------------------------------------------------------------------------

def _etcd(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    p, b, t = inv.ports, inv.settings.binaries, inv.settings.etcd
    conf = c.etcd_config(
        name=host.site, data_dir="/var/lib/firebreak-etcd", client_url=_url("https", host.address, p.etcd),
        peer_url=_url("https", host.address, p.etcd_peer), metrics_url=_url("http", host.address, p.etcd_metrics),
        cluster={site.name: _url("https", _etcd_host(inv, site.name).address, p.etcd_peer) for site in inv.sites},
        cluster_token=s.cluster_token,
        tls=c.EtcdTLS(ca=CA, cert=f"{PKI}/etcd-member.pem", key=f"{PKI}/etcd-member-key.pem",
                      token_public=f"{PKI}/etcd-token.pem", token_private=f"{PKI}/etcd-token-key.pem",
                      peer_ca=PEER_CA, peer_cert=f"{PKI}/etcd-peer.pem", peer_key=f"{PKI}/etcd-peer-key.pem"),
        heartbeat_ms=t.heartbeat_ms, election_ms=t.election_ms)
    path = f"{ETC}/etcd.yml"
    unit = Unit(name=unit_name("etcd"), description=f"etcd member of site {host.site} (Firebreak's control plane)",
                exec_start=tuple(c.etcd_argv(b.etcd, path)), user=USERS["etcd"], group=USERS["etcd"],
                type="notify", state_directory="firebreak-etcd",
                # etcd's guidance: its disk writes and heartbeats must not wait behind other work.
                extra=(("IOSchedulingClass", "best-effort"), ("IOSchedulingPriority", "0"), ("Nice", "-5"),
                       ("TimeoutStartSec", "0")),
                comment="One member per site. Its data directory is /var/lib/firebreak-etcd (StateDirectory).")
    return {path: RenderedFile(yaml.safe_dump(conf, sort_keys=False), 0o640, USERS["etcd"])}, [unit]


def patroni_member(inv: Inventory, host: Host, cluster: Cluster) -> c.PatroniMember:
    p = inv.ports
    state = f"/var/lib/firebreak-postgresql/{cluster.scope}"
    return c.PatroniMember(
        scope=cluster.scope, name=host.site, host=host.address, api_port=cluster.port(p, "patroni"),
        pg_port=cluster.port(p, "postgres"), data_dir=f"{state}/data", bin_dir=inv.settings.binaries.pg_bin_dir,
        pgpass=f"{state}/pgpass", socket_dir=f"/run/firebreak-postgresql-{cluster.scope}",
        log_dir=f"/var/log/firebreak-postgresql/{cluster.scope}", client_networks=client_networks(inv),
        sync=cluster.sync)


def _patroni(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    files: dict[str, RenderedFile] = {}
    units = []
    etcd = c.EtcdClient(hosts=(_hostport(_etcd_host(inv, host.site).address, inv.ports.etcd),), ca=CA,
                        cert=f"{access_dir('patroni')}/client.pem", key=f"{access_dir('patroni')}/client-key.pem",
                        user="patroni")
    env_file = f"{SECRETS}/patroni.env"
    files[env_file] = RenderedFile(_env_text(c.patroni_env(c.PatroniPasswords(
        superuser=s.superuser, replication=s.replication, api=s.patroni_api, etcd=s.etcd["patroni"]))),
        0o600, USERS["postgres"])
    local_etcd = host.has("etcd")
    for cluster in inv.clusters:
        if host.site not in cluster.sites:
            continue
        m = patroni_member(inv, host, cluster)
        path = f"{ETC}/patroni/{cluster.scope}/patroni.yml"
        files[path] = RenderedFile(yaml.safe_dump(c.patroni_config(m, etcd), sort_keys=False), 0o640,
                                   USERS["postgres"])
        units.append(Unit(
            name=unit_name("patroni", cluster.scope),
            description=f"Patroni and PostgreSQL, cluster {cluster.scope}, member {m.name}",
            exec_start=tuple(c.patroni_argv(inv.settings.binaries.patroni, path)),
            user=USERS["postgres"], group=USERS["postgres"], environment_files=(env_file,),
            after=(unit_name("etcd"),) if local_etcd else (), wants=(unit_name("etcd"),) if local_etcd else (),
            exec_reload=(("/bin/kill", "-s", "HUP", MAINPID),),
            state_directory=f"firebreak-postgresql/{cluster.scope}",
            runtime_directory=f"firebreak-postgresql-{cluster.scope}", runtime_directory_mode="0700",
            # Patroni stops PostgreSQL itself, cleanly; systemd must not kill the postmaster under it.
            runtime_directory_preserve=True, logs_directory=f"firebreak-postgresql/{cluster.scope}",
            restart="on-failure", restart_sec="5s",
            extra=(("KillMode", "process"), ("TimeoutStopSec", "60"), ("Nice", "-5")),
            comment=("Patroni runs PostgreSQL; its passwords come from the EnvironmentFile (mode 0600), "
                     "not from patroni.yml.")))
    return files, units


def _agent(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    p = inv.ports
    admin_access = f"{access_dir(ROOT_ROLE)}/access.json" if inv.settings.etcd.admin_on_agents else None
    door = db_door = None
    groups = []
    if host.has("door") and inv.settings.door.kind == "haproxy":
        # HAProxy's own file has the routes and the certificate; the agent steers it by its socket
        door = {"kind": "haproxy", "listen": _hostport(host.address, p.door), "admin": f"unix/{DOOR_ADMIN}"}
        groups.append(role_user(inv, "door"))
    elif host.has("door"):
        door = {"listen": _hostport(host.address, p.door), "admin": c.caddy_admin(DOOR_ADMIN),
                "tls_listen": _hostport(host.address, p.door_tls), "tls_cert": f"{PKI}/door.pem",
                "tls_key": door_key(inv)}
        groups.append(USERS["door"])
    doors = inv.door_clusters
    if host.has("db-door") and doors:
        first = doors[0]
        db_door = {"admin": f"unix/{DB_DOOR_ADMIN}", "host": host.address, "port": first.port(p, "db_door"),
                   "read_only_port": first.port(p, "db_door_ro")}
        if inv.estate:
            db_door["clusters"] = {cl.scope: {"port": cl.port(p, "db_door"), "read_only_port": cl.port(p, "db_door_ro")}
                                   for cl in doors}
        groups.append(USERS["db-door"])
    claims = any(h.has("claims") for h in inv.hosts)
    # The agent's secrets in files only its user can read, so agent.yml holds none.
    files = {AGENT_PATRONI_PASSWORD: RenderedFile(s.patroni_api + "\n", 0o600, USERS["agent"])}
    if claims:
        files[AGENT_APP_ADMIN_TOKEN] = RenderedFile(s.app_admin + "\n", 0o600, USERS["agent"])
    cfg = c.agent_config(
        site=host.site, listen=_hostport(host.address, p.console), sites=site_endpoints(inv),
        etcd=etcd_client_urls(inv, host.site), scopes=[cl.scope for cl in inv.clusters], discover=inv.estate,
        etcd_access=f"{access_dir(agent_role(host.site))}/access.json",
        etcd_ops_access=f"{access_dir(OPS_ROLE)}/access.json", etcd_admin_access=admin_access,
        patroni_password_file=AGENT_PATRONI_PASSWORD,
        **({"app_admin_token_file": AGENT_APP_ADMIN_TOKEN} if claims else {"app_admin_token": ""}),
        door=door, db_door=db_door)
    path = f"{ETC}/agent.yml"
    head = (f"# The agent of site {host.site} (firebreak deploy render). It holds no secret: Patroni's REST\n"
            f"# password and the app's admin token are in {SECRETS}/ (mode 0600).\n")
    after = tuple(unit_name(r) for r in ("etcd", "db-door", "door") if host.has(r))
    unit = Unit(name=unit_name("agent"), description=f"Firebreak site agent of {host.site} (failure detection "
                                                      "by agreement, failover, doors, ops console)",
                exec_start=tuple(c.agent_argv(f"{inv.settings.binaries.venv}/bin/firebreak", path)),
                user=USERS["agent"], group=USERS["agent"], supplementary_groups=tuple(dict.fromkeys(groups)),
                after=after, wants=after, restart="always", restart_sec="1s",
                environment=tuple(c.CRASH_REPORTING.items()),
                # The agent must keep running while everything else on the host struggles.
                extra=(("Nice", "-5"),),
                comment="One per site. It steers the doors on its host through their admin sockets "
                        "(group " + (", ".join(groups) or "none") + ").")
    files[path] = RenderedFile(head + yaml.safe_dump(cfg, sort_keys=False), 0o640, USERS["agent"])
    return files, [unit]


def _claims(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    p = inv.ports
    cluster = inv.clusters[0]
    port = cluster.port(p, "postgres")
    members = [(site.one("postgres").address, port) for site in inv.sites if site.name in cluster.sites]
    own = [(site.one("postgres").address, port) for site in inv.sites if site.name == host.site and
           site.name in cluster.sites]
    passfile = f"{SECRETS}/claims.pgpass"
    user, db = cluster.app_user, cluster.dbname
    door_hosts = [h.address for h in inv.hosts if h.has("door")]
    hooks = _webhook_files(inv.webhooks) if inv.webhooks is not None else {}
    env = c.claims_env(
        site=host.site, dsn_rw=c.dsn(user, members, db, passfile=passfile),
        dsn_local=c.dsn(user, own or members, db, read_write=False, passfile=passfile),
        dsn_any=c.dsn(user, members, db, read_write=False, passfile=passfile),
        trusted_proxies=door_hosts + ["127.0.0.1"], etcd=etcd_client_urls(inv, host.site),
        etcd_access=f"{access_dir('claims')}/access.json", secure_cookies=bool(door_hosts),
        admin_bind=_hostport(host.address, inv.ports.claims_admin), webhooks=WEBHOOKS if hooks else None)
    env_path, secret_path = f"{ETC}/claims.env", f"{SECRETS}/claims.env"
    files = {
        **hooks,
        env_path: RenderedFile(_env_text(env), 0o640, USERS["claims"]),
        secret_path: RenderedFile(_env_text(c.claims_secret_env(admin_token=s.app_admin, session_secret=s.session)),
                                  0o600, USERS["claims"]),
        passfile: RenderedFile(c.pgpass_line(user, db, s.app), 0o600, USERS["claims"]),
    }
    unit = Unit(name=unit_name("claims"), description=f"Firebreak claims service of {host.site}",
                exec_start=tuple(c.claims_argv(f"{inv.settings.binaries.venv}/bin/python",
                                               _hostport(host.address, p.claims))),
                user=USERS["claims"], group=USERS["claims"], environment_files=(env_path, secret_path),
                after=tuple(unit_name("patroni", cl.scope) for cl in inv.clusters
                            if host.has("postgres") and host.site in cl.sites),
                restart="always", restart_sec="1s")
    return files, [unit]


def _webhook_files(w: "Webhooks") -> dict[str, RenderedFile]:
    """The subscribers file every claims host reads (FIREBREAK_WEBHOOKS) and each subscriber's
    secret in a file of its own, 0600, beside the service's other secrets: the file names them,
    it never holds one."""
    files, subscribers = {}, []
    for i, sub in enumerate(w.subscribers, 1):
        path = f"{SECRETS}/webhooks/{i}.secret"
        files[path] = RenderedFile(sub.secret.decode("utf-8") + "\n", 0o600, USERS["claims"])
        subscribers.append({"url": sub.url, "secret_file": path})
    doc = {"public_url": w.public_url, "subscribers": subscribers, "horizon_hours": w.horizon_s / 3600,
           "timeout_s": w.timeout_s, "lease_s": w.retry.lease_s, "retry_base_s": w.retry.base_s,
           "retry_max_s": w.retry.max_s, "give_up_hours": w.retry.give_up_s / 3600, "poll_s": w.poll_s}
    head = "# Webhook subscribers (docs/PUBLIC-RECORD.md), from the inventory's settings.claims.webhooks.\n"
    files[WEBHOOKS] = RenderedFile(head + yaml.safe_dump(doc, sort_keys=False), 0o640, USERS["claims"])
    return files


def _db_door(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    p = inv.ports
    doors = inv.door_clusters
    # A door of one cluster has the plain backends (pg_rw, pg_ro): the agent steers those when it
    # has one cluster's routes to apply (control/dbdoor.py DbDoorKeeper), as the lab runs it.
    clusters = [ClusterDoor(cl.scope if len(doors) > 1 else None, cl.port(p, "db_door"), cl.port(p, "db_door_ro"),
                            {site.name: (site.one("postgres").address, cl.port(p, "postgres"), cl.port(p, "patroni"))
                             for site in inv.sites})
                for cl in doors]
    text = c.db_door_config(name=f"database door of {host.site}", bind_host=host.address,
                            admin_socket=DB_DOOR_ADMIN, clusters=clusters)
    path = f"{ETC}/haproxy.cfg"
    haproxy = inv.settings.binaries.haproxy
    unit = Unit(name=unit_name("db-door"), description=f"Firebreak database door of {host.site} (HAProxy)",
                exec_start=tuple(c.haproxy_argv(haproxy, path)), user=USERS["db-door"], group=USERS["db-door"],
                type="notify", exec_start_pre=((haproxy, "-c", "-q", "-f", path),),
                exec_reload=((haproxy, "-c", "-q", "-f", path), ("/bin/kill", "-USR2", MAINPID)),
                runtime_directory="firebreak-db-door", restart="always", restart_sec="1s",
                extra=HAPROXY_UNIT_EXTRA,
                comment=f"Its runtime socket {DB_DOOR_ADMIN} is mode 660, group {USERS['db-door']}: the agent "
                        "joins that group to steer it.")
    return {path: RenderedFile(text, 0o644)}, [unit]


# HAProxy's master exits 143 on the SIGTERM of a stop, and its workers finish their connections
HAPROXY_UNIT_EXTRA = (("KillMode", "mixed"), ("SuccessExitStatus", "143"))


def _door(inv: Inventory, host: Host, s: DeploySecrets) -> tuple[dict[str, RenderedFile], list[Unit]]:
    p = inv.ports
    apps = {site.name: _url("http", site.one("claims").address, p.claims) for site in inv.sites if site.one("claims")}
    # The host's firewall is the operator's: this table is for its nftables.conf to include
    # (DEPLOY.md, "Floods from one address"); no unit of ours runs as root to load it.
    limit = {f"{ETC}/door-limit.nft": RenderedFile(
        c.door_limit_nft([p.door, p.door_tls], inv.settings.door.connections_per_source), 0o644)}
    low = min(p.door, p.door_tls) < 1024
    if inv.settings.door.kind == "haproxy":
        files, units = _haproxy_door(inv, host, apps, low)
        return files | limit, units
    conf = c.caddy_config(site=host.site, order=[site.name for site in inv.own_first(host.site)], apps=apps,
                          listen=_hostport(host.address, p.door), admin=c.caddy_admin(DOOR_ADMIN),
                          tls=DoorTLS(_hostport(host.address, p.door_tls), f"{PKI}/door.pem", door_key(inv)))
    path = f"{ETC}/caddy.json"
    unit = Unit(name=unit_name("door"), description=f"Firebreak front door of {host.site} (Caddy)",
                exec_start=tuple(c.caddy_argv(inv.settings.binaries.caddy, path)), user=USERS["door"],
                group=USERS["door"], type="notify", runtime_directory="firebreak-door",
                state_directory="firebreak-door",
                # Caddy keeps its state (and would autosave its config) under XDG directories.
                environment=(("XDG_DATA_HOME", "/var/lib/firebreak-door"),
                             ("XDG_CONFIG_HOME", "/var/lib/firebreak-door")),
                capabilities=("CAP_NET_BIND_SERVICE",) if low else (), restart="always", restart_sec="1s",
                extra=(("TimeoutStopSec", "5s"),),
                comment=f"Its admin socket {DOOR_ADMIN} is mode 0220, group {USERS['door']}: the agent joins "
                        f"that group to push routes. {SYSCTL} sets net.ipv4.tcp_migrate_req=1 (DEPLOY.md).")
    return {path: RenderedFile(json.dumps(conf, indent=2) + "\n", 0o644), **limit}, [unit]


def _haproxy_door(inv: Inventory, host: Host, apps: dict[str, str],
                  low: bool) -> tuple[dict[str, RenderedFile], list[Unit]]:
    """The front door on HAProxy (settings.door.kind): its file (control/door_haproxy.py) and a unit
    like the database door's, its runtime socket mode 660 in its own runtime directory."""
    from firebreak.control.door_haproxy import haproxy_config

    p = inv.ports
    user = role_user(inv, "door")
    text = haproxy_config(site=host.site, sites=[site.name for site in inv.sites], apps=apps,
                          listen=_hostport(host.address, p.door), admin_socket=DOOR_ADMIN,
                          tls_pem=f"{PKI}/door.pem", tls_listen=_hostport(host.address, p.door_tls), socket_mode="660")
    path = f"{ETC}/door-haproxy.cfg"
    haproxy = inv.settings.binaries.haproxy
    unit = Unit(name=unit_name("door"), description=f"Firebreak front door of {host.site} (HAProxy)",
                exec_start=tuple(c.haproxy_argv(haproxy, path)), user=user, group=user,
                type="notify", runtime_directory="firebreak-door", exec_start_pre=((haproxy, "-c", "-q", "-f", path),),
                capabilities=("CAP_NET_BIND_SERVICE",) if low else (), restart="always", restart_sec="1s",
                extra=(*HAPROXY_UNIT_EXTRA, ("TimeoutStopSec", "5s")),
                comment=f"Its runtime socket {DOOR_ADMIN} is mode 660, group {user}: the agent joins that group to "
                        "apply drains. Its key is at the certificate's name plus .key (firebreak pki).")
    return {path: RenderedFile(text, 0o644)}, [unit]


_COMPONENTS = {"etcd": _etcd, "postgres": _patroni, "agent": _agent, "claims": _claims, "db-door": _db_door,
               "door": _door}


# ---- etcd identities ----------------------------------------------------------------------------

def host_etcd_roles(inv: Inventory, host: Host) -> list[str]:
    """The etcd users whose client certificate this host holds (and password, but for Patroni's,
    which is in its EnvironmentFile)."""
    roles = []
    if host.has("postgres"):
        roles.append("patroni")
    if host.has("agent"):
        roles += [agent_role(host.site), OPS_ROLE] + ([ROOT_ROLE] if inv.settings.etcd.admin_on_agents else [])
    if host.has("claims"):
        roles.append("claims")
    return roles


def _access(inv: Inventory, host: Host, s: DeploySecrets) -> dict[str, RenderedFile]:
    files = {}
    for role in host_etcd_roles(inv, host):
        d, owner = access_dir(role), role_owner(role)
        doc = {"ca": CA, "cert": f"{d}/client.pem", "key": f"{d}/client-key.pem", "user": role}
        if role != "patroni":
            doc["password_file"] = f"{d}/password"
            files[f"{d}/password"] = RenderedFile(s.etcd[role] + "\n", 0o600, owner)
        files[f"{d}/access.json"] = RenderedFile(json.dumps(doc, indent=2) + "\n", 0o640, owner)
    return files


# ---- the whole host -----------------------------------------------------------------------------

def host_units(inv: Inventory, host: Host, s: DeploySecrets) -> list[Unit]:
    return [u for role in _ordered(host.roles) for u in _COMPONENTS[role](inv, host, s)[1]]


def _ordered(roles: Iterable[str]) -> list[str]:
    order = ("etcd", "postgres", "db-door", "door", "claims", "agent")
    return [r for r in order if r in roles]


def render_host(inv: Inventory, host: Host, s: DeploySecrets) -> dict[str, RenderedFile]:
    """Every file `host` needs, by its absolute path on the host."""
    files: dict[str, RenderedFile] = {}
    units: list[Unit] = []
    for role in _ordered(host.roles):
        f, u = _COMPONENTS[role](inv, host, s)
        files.update(f)
        units += u
    files.update(_access(inv, host, s))
    for u in units:
        files[f"{UNITS}/{u.name}"] = RenderedFile(unit_text(u))
    files["/etc/sysusers.d/firebreak.conf"] = RenderedFile(_sysusers(inv, host))
    files[SYSCTL] = RenderedFile(c.sysctl_conf(c.kernel_settings(door=host.has("door"))))
    files["/etc/tmpfiles.d/firebreak.conf"] = RenderedFile(_tmpfiles(inv, host, files))
    return files


def render(inv: Inventory, s: DeploySecrets) -> dict[str, RenderedFile]:
    """Every host's files: {"<host>/<path on the host, without its leading />": file}."""
    out = {}
    for host in inv.hosts:
        for path, f in render_host(inv, host, s).items():
            out[f"{host.name}{path}"] = f
    return dict(sorted(out.items()))


def _env_text(env: dict[str, str]) -> str:
    """An EnvironmentFile: one KEY="value" a line, the value quoted as systemd reads it."""
    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    return "".join(f"{k}={q(v)}\n" for k, v in env.items())


def _sysusers(inv: Inventory, host: Host) -> str:
    lines = ["# The users Firebreak's units run as (systemd-sysusers creates those missing; existing ones,",
             "# such as Debian's postgres and haproxy, are left as they are)."]
    for role in _ordered(host.roles):
        user = role_user(inv, role)
        if not any(line.startswith(f"u {user} ") for line in lines):  # one line a user (two doors: haproxy)
            lines.append(f'u {user} - "Firebreak {role}" {USER_HOMES[user]} /usr/sbin/nologin')
    return "\n".join(lines) + "\n"


def _tmpfiles(inv: Inventory, host: Host, files: dict[str, RenderedFile]) -> str:
    """systemd-tmpfiles lines that give every rendered file, and every certificate the host needs,
    its owner and mode (`z`: adjust an existing path, ignore a missing one)."""
    lines = ["# Owner and mode of Firebreak's files on this host: `systemd-tmpfiles --create` after copying.",
             f"d {ETC} 0755 root root -", f"d {SECRETS} 0755 root root -", f"d {PKI} 0755 root root -"]
    for path, f in sorted(files.items()):
        parent = path.rsplit("/", 1)[0]
        if path.startswith(SECRETS + "/") and parent != SECRETS:
            # a directory of one owner's secrets (the webhook subscribers'): only that owner enters
            lines.append(f"d {parent} 0700 {f.owner} {f.owner} -")
        if path.startswith(ETC):
            lines.append(f"z {path} {f.mode:04o} {f.owner} {f.owner} -")
    lines.append(f"z {CA} 0644 root root -")
    keys = []
    if host.has("etcd"):
        keys += [("etcd-member", USERS["etcd"]), ("etcd-peer", USERS["etcd"]), ("etcd-token", USERS["etcd"])]
        lines.append(f"z {PEER_CA} 0644 root root -")
    for name, owner in keys:
        lines += [f"z {PKI}/{name}.pem 0644 {owner} {owner} -", f"z {PKI}/{name}-key.pem 0600 {owner} {owner} -"]
    if host.has("door"):
        owner = role_user(inv, "door")
        lines += [f"z {PKI}/door.pem 0644 {owner} {owner} -", f"z {door_key(inv)} 0600 {owner} {owner} -"]
    for role in host_etcd_roles(inv, host):
        owner = role_owner(role)
        lines += [f"d {access_dir(role)} 0750 {owner} {owner} -",
                  f"z {access_dir(role)}/client.pem 0644 {owner} {owner} -",
                  f"z {access_dir(role)}/client-key.pem 0600 {owner} {owner} -"]
    return "\n".join(dict.fromkeys(lines)) + "\n"

"""Where everything of the lab lives: addresses, ports, paths. Pure data, computed from the
topology's sites, the network mode and the lab's home directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

# One address per site, same ports everywhere: a site is a network place, as in real life.
# Ports are off the well-known ones so a system PostgreSQL or etcd on this host never collides.
PORTS = {"etcd": 12379, "etcd_peer": 12380, "etcd_health": 12381, "patroni": 18008, "postgres": 15432, "app": 18080,
         "app_admin": 18081,
         "console": 18090, "door": 18000, "door_tls": 18443, "db_door": 15433, "db_door_ro": 15434}
LOOPBACK_NET = "127.0.{n}.1"       # site i -> 127.0.(11+i).1
NETNS_NET = "10.77.0.{n}"          # site i -> 10.77.0.(11+i); the bridge is 10.77.0.1
NETNS_BRIDGE = "fb-br0"
NETNS_BRIDGE_ADDR = "10.77.0.1"
NETNS_PREFIX = 24
NETNS_SUBNET = "10.77.0.0"          # the bridge's network, NETNS_PREFIX bits
# A namespace on the lab's network that belongs to no site: clients from elsewhere, with their own
# source address (a flood from one address, which each site's door limits: deploy.components).
NETNS_OUTSIDER = "fb--outsider"  # "--": no site is named so (a site name begins with a letter)
NETNS_OUTSIDER_ADDR = "10.77.0.250"
# Clients from many addresses, as users are: the intake benchmark's own load, which a door's
# per-source limit must let through while it stops a flood from one address. (name, address)
NETNS_CROWD = tuple((f"fb--crowd{i}", f"10.77.0.{240 + i}") for i in range(1, 9))
SCOPE = "firebreak"                # Patroni cluster name: its keys live under /service/firebreak/
DATABASE = "claims"
COMPONENTS = ("etcd", "patroni", "app", "door")


@dataclass(frozen=True)
class SiteLayout:
    name: str
    index: int
    address: str
    dir: Path
    netns: str | None  # the site's network namespace, or None in loopback mode

    def url(self, component: str) -> str:
        # etcd is locked (TLS, client certificates, users: lab/access.py); the rest is plain HTTP
        # on the lab's own network.
        scheme = "https" if component in ("etcd", "etcd_peer", "door_tls") else "http"
        return f"{scheme}://{self.address}:{PORTS[component]}"

    @property
    def door_admin(self) -> str:
        # Caddy's admin API has no authentication: it listens on a unix socket that Caddy
        # creates mode 0200, so only the lab's user (Caddy and the agent) can open it.
        return f"unix/{self.dir / 'run' / 'door-admin.sock'}"

    @property
    def db_door_admin(self) -> str:
        # HAProxy's runtime API, mode 0600 in the site's private run directory: only the lab's
        # user (HAProxy and the agent) can steer the database door.
        return f"unix/{self.dir / 'run' / 'db-door.sock'}"

    @property
    def pg_port(self) -> int:
        return PORTS["postgres"]

    @property
    def data_dir(self) -> Path:
        return self.dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        # A separate socket directory per site: two PostgreSQL instances on one host would
        # otherwise fight over /tmp/.s.PGSQL.<port>.
        return self.dir / "run"

    def log(self, component: str) -> Path:
        return self.dir / "log" / f"{component}.log"

    @property
    def door_cert(self) -> tuple[Path, Path]:
        """The front door's HTTPS certificate and key, from the lab's CA (lab/access.py). The key at
        the certificate's name plus .key, where HAProxy finds it (`lab up --door haproxy`)."""
        d = self.dir / "door-tls"
        return d / "door.pem", d / "door.pem.key"

    @property
    def etcd_member_cert(self) -> tuple[Path, Path]:
        """This site's etcd member's server-and-peer certificate and key (lab/access.py)."""
        d = self.dir / "etcd-tls"
        return d / "member.pem", d / "member-key.pem"

    @property
    def etcd_token_keys(self) -> tuple[Path, Path]:
        """The public and private key this site's etcd member signs and checks auth tokens with."""
        d = self.dir / "etcd-tls"
        return d / "token.pem", d / "token-key.pem"


@dataclass(frozen=True)
class LabLayout:
    home: Path
    net: str  # "loopback" | "netns"
    sites: tuple[SiteLayout, ...]
    lab_id: str

    def site(self, name: str) -> SiteLayout:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    @property
    def etcd_endpoints(self) -> list[str]:
        return [s.url("etcd") for s in self.sites]

    @property
    def ca_file(self) -> Path:
        """The lab's CA certificate (its key is never written)."""
        return self.home / "pki" / "ca.pem"

    def access_dir(self, role: str) -> Path:
        """An etcd role's client certificate, key, password and access file (lab/access.py)."""
        return self.home / "access" / role

    def access_file(self, role: str) -> Path:
        return self.access_dir(role) / "access.json"

    @property
    def webhooks_file(self) -> Path:
        """The apps' webhook subscribers (FIREBREAK_WEBHOOKS), when lab/webhooks.py wrote one."""
        return self.home / "webhooks" / "webhooks.yml"

    @property
    def host_address(self) -> str:
        """Where the sites reach the machine's own listeners: the bridge's address in netns mode."""
        return NETNS_BRIDGE_ADDR if self.net == "netns" else "127.0.0.1"

    def dsn(self, user: str, password: str, *, read_write: bool = True, sites: list[str] | None = None,
            dbname: str = DATABASE, connect_timeout: int = 2, port: int | None = None) -> str:
        """A libpq multi-host URL; with read_write, libpq finds the current primary itself."""
        chosen = [s for s in self.sites if sites is None or s.name in sites]
        hosts = ",".join(f"{s.address}:{port or s.pg_port}" for s in chosen)
        params = {
            "connect_timeout": str(connect_timeout),
            # A peer that lost power answers nothing; without these a client waits for TCP to
            # give up (minutes). tcp_user_timeout bounds unacknowledged sends, keepalives idle reads.
            "keepalives": "1", "keepalives_idle": "2", "keepalives_interval": "1", "keepalives_count": "2",
            "tcp_user_timeout": "3000",
        }
        if read_write:
            params["target_session_attrs"] = "read-write"
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{hosts}/{dbname}?{query}"


    def door_dsn(self, site: str, user: str, password: str, *, read_only: bool = False,
                 dbname: str = DATABASE, port: int | None = None) -> str:
        """A plain DSN through `site`'s database door: one host, one port, libpq's defaults. The
        door, not the client, knows where the primary is and shuts sessions a fault strands.
        `port`: a cluster's own port on the door (an estate lab has one pair per cluster)."""
        s = self.site(site)
        port = port or PORTS["db_door_ro" if read_only else "db_door"]
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{s.address}:{port}/{dbname}"


def site_address(net: str, index: int) -> str:
    n = 11 + index
    return (LOOPBACK_NET if net == "loopback" else NETNS_NET).format(n=n)


def make_layout(home: Path, net: str, sites: list[str], lab_id: str) -> LabLayout:
    return LabLayout(
        home=home, net=net, lab_id=lab_id,
        sites=tuple(SiteLayout(name=s, index=i, address=site_address(net, i), dir=home / "sites" / s,
                               netns=f"fb-{s}" if net == "netns" else None)
                    for i, s in enumerate(sites)),
    )

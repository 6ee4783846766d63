"""The lab's network places: loopback addresses, or one network namespace per site.

Only ever touches the namespaces, links and nftables tables that the lab itself created, all
named with the `fb-` / `firebreak_` prefix and recorded in the lab's state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from firebreak.deploy.components import door_limit_nft, kernel_settings
from firebreak.errors import LabError
from firebreak.lab.layout import (NETNS_BRIDGE, NETNS_BRIDGE_ADDR, NETNS_CROWD, NETNS_OUTSIDER, NETNS_OUTSIDER_ADDR,
                                  NETNS_PREFIX, NETNS_SUBNET, PORTS, LabLayout, SiteLayout)

NFT_TABLE = "firebreak_lab"


def is_root() -> bool:
    return os.geteuid() == 0


def have_nft() -> bool:
    return is_root() and shutil.which("nft") is not None


def resolve_mode(requested: str) -> str:
    if requested == "auto":
        return "netns" if is_root() and shutil.which("ip") else "loopback"
    if requested == "netns" and not is_root():
        raise LabError("--net netns needs root (network namespaces); use --net loopback as a normal user")
    return requested


def _run(*argv: str, netns: str | None = None, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    if netns:
        argv = ("ip", "netns", "exec", netns) + argv
    r = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise LabError(f"network setup failed: {' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def host_link(site: SiteLayout) -> str:
    return f"fb-v{site.index}"


def site_link(site: SiteLayout) -> str:
    """The site's end of its link, inside its namespace."""
    return f"fb-p{site.index}"


OUTSIDER_LINK = "fb-vout"  # the outsider namespace's link on the bridge
# Namespaces of no site on the lab's bridge: (namespace, host link, its peer, address).
OUTSIDERS = ((NETNS_OUTSIDER, OUTSIDER_LINK, "fb-pout", NETNS_OUTSIDER_ADDR),
             *((name, f"fb-vc{i}", f"fb-pc{i}", addr) for i, (name, addr) in enumerate(NETNS_CROWD, 1)))


def _namespaces(layout: LabLayout) -> list[str]:
    return [*(s.netns for s in layout.sites if s.netns), *(o[0] for o in OUTSIDERS)]


def _links(layout: LabLayout) -> list[str]:
    return [NETNS_BRIDGE, *(host_link(s) for s in layout.sites), *(o[1] for o in OUTSIDERS)]


def existing_netns() -> set[str]:
    r = _run("ip", "netns", "list", check=False)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def setup(layout: LabLayout) -> list[str]:
    """The lab's namespaces and links (netns only). Returns the site hosts' kernel settings this
    kernel lacks (host_settings)."""
    if layout.net != "netns":
        return []
    taken = existing_netns() & set(_namespaces(layout))
    if taken:
        raise LabError(f"network namespaces {', '.join(sorted(taken))} already exist; another lab is running "
                       "(`firebreak lab down` it) or they were left behind (`ip netns del NAME`)")
    links = _links_present(_links(layout))
    if links:
        raise LabError(f"network links {', '.join(links)} already exist; another lab is running "
                       "(`firebreak lab down` it) or they were left behind (`ip link del NAME`)")
    try:
        return _build(layout)
    finally:
        # none of these names existed a moment ago: whatever has them now, half-built or whole, is ours
        _record(layout)


def _build(layout: LabLayout) -> list[str]:
    _run("ip", "link", "add", NETNS_BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{NETNS_BRIDGE_ADDR}/{NETNS_PREFIX}", "dev", NETNS_BRIDGE)
    _run("ip", "link", "set", NETNS_BRIDGE, "up")
    missing: set[str] = set()
    for s in layout.sites:
        _attach(s.netns, host_link(s), site_link(s), s.address)
        missing.update(host_settings(s.netns))
    # Each site's door counts its clients' connections per source address, as on a real door host
    # (DEPLOY.md): a flood from one address cannot take every connection.
    door_limit(layout)
    for netns, link, peer, address in OUTSIDERS:
        _attach(netns, link, peer, address)
    return sorted(missing)


def door_limit(layout: LabLayout, per_source: int | None = None, extra_ports: tuple[int, ...] = ()) -> bool:
    """Load (or load again, replacing it) each site's per-source connection limit at its door;
    `per_source` None is the deployed default; `extra_ports`: more ports counted with the door's
    (a benchmark's second door beside it). False where it cannot (no netns, no nft)."""
    if layout.net != "netns" or not shutil.which("nft"):
        return False
    cap = {} if per_source is None else {"per_source": per_source}
    ports = [PORTS["door"], PORTS["door_tls"], *extra_ports]
    for s in layout.sites:
        _run("nft", "-f", "-", netns=s.netns, input=door_limit_nft(ports, **cap))
    return True


def _attach(netns: str, link: str, peer: str, address: str) -> None:
    """A new namespace with one address on the lab's bridge."""
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "set", "lo", "up", netns=netns)
    _run("ip", "link", "add", link, "type", "veth", "peer", "name", peer)
    _run("ip", "link", "set", peer, "netns", netns)
    _run("ip", "addr", "add", f"{address}/{NETNS_PREFIX}", "dev", peer, netns=netns)
    _run("ip", "link", "set", peer, "up", netns=netns)
    _run("ip", "link", "set", link, "master", NETNS_BRIDGE)
    _run("ip", "link", "set", link, "up")


def _set(netns: str, setting: str, value: int, check: bool = True) -> bool:
    """Write a kernel setting (a /proc/sys path) in one of the lab's namespaces, never the host's.
    False where the kernel has no such setting (with check False; else LabError)."""
    return _run("sh", "-c", f"echo {value} > {setting}", netns=netns, check=check).returncode == 0


def host_settings(netns: str) -> list[str]:
    """Set a site host's kernel settings (deploy.components.kernel_settings: the ones `deploy
    render` writes for real hosts) in one of the lab's namespaces, never the host's, before any
    of its processes starts (some are read as a socket is made). Returns those this kernel lacks:
    without tcp_rto_max_ms (Linux 6.15) etcd re-forms late after a long cut heals, without
    tcp_migrate_req (5.14) a door resets a connection now and then at a reload."""
    return [k.key for k in kernel_settings(door=True) if not _set(netns, k.path, k.value, check=False)]


# Linux sends a lost segment again after at least 200 ms (TCP_RTO_MIN), then doubles the wait,
# whatever the path's round trip. A floor of 20 ms on the routes between sites was measured
# against the kernel's in one run (bench/drills.py --rto-min-ms 0,20, 2026-12-05): no change in
# what a flap or a power cut cost any client, so the lab keeps the kernel's; the benchmark can
# set it again.

def rto_min_route(site: SiteLayout, ms: int) -> list[str]:
    """`ip route replace` of a site's route to the others (its namespace's one link on the lab's
    bridge) with retransmissions no sooner than `ms` milliseconds; 0: the kernel's own floor. Pure."""
    argv = ["ip", "-n", site.netns, "route", "replace", f"{NETNS_SUBNET}/{NETNS_PREFIX}", "dev",
            site_link(site), "proto", "kernel", "scope", "link", "src", site.address]
    return argv + (["rto_min", f"{ms}ms"] if ms else [])


def rto_min(layout: LabLayout, ms: int) -> bool:
    """Set (or, with 0, take off) each site's retransmission floor toward the other sites. Live
    connections take it at their next send. False where the lab has no namespaces of its own."""
    if layout.net != "netns":
        return False
    for s in layout.sites:
        _run(*rto_min_route(s, ms))
    return True


# A connection with few segments in flight (a database session's statement, a WAL stream's
# record: a "thin" stream) that loses one waits out an RTO that doubles at each try: a write sent
# into a link's half-second lapse is sent again 0.2, 0.6, 1.4 s later and can miss the next up
# half altogether. With tcp_thin_linear_timeouts the first six tries of a thin stream come one RTO
# apart instead (Linux's tcp_retransmit_timer), and streams that carry bulk data back off as ever.
THIN_LINEAR = "/proc/sys/net/ipv4/tcp_thin_linear_timeouts"


def thin_linear(layout: LabLayout, on: bool) -> bool:
    """Turn linear retransmission timeouts for thin streams on (or off) in each site's namespace
    (never the host's). False where the lab has no namespaces of its own."""
    if layout.net != "netns":
        return False
    for s in layout.sites:
        _set(s.netns, THIN_LINEAR, int(on))
    return True


OWNED = "network.json"


def _netns_id(name: str) -> int | None:
    """A namespace's identity: the inode of its bind mount, new each time one is made."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def _link_id(name: str) -> int | None:
    try:
        return int((Path("/sys/class/net") / name / "ifindex").read_text())
    except (OSError, ValueError):
        return None


def _links_present(names: list[str]) -> list[str]:
    return [n for n in names if _link_id(n) is not None]


def _record(layout: LabLayout) -> None:
    """Write down which namespaces and links this lab made, by identity and not by name: another
    lab's (another checkout's tests, say) have the same names, and are never ours to remove."""
    owned = {"netns": {n: _netns_id(n) for n in _namespaces(layout)},
             "links": {n: _link_id(n) for n in _links(layout)}}
    (layout.home / OWNED).write_text(json.dumps(owned))


def _owned(layout: LabLayout) -> tuple[list[str], list[str]]:
    """The namespaces and links present now that are the very ones this lab recorded making."""
    try:
        owned = json.loads((layout.home / OWNED).read_text())
    except (OSError, ValueError):
        return [], []
    netns = [n for n, i in owned.get("netns", {}).items() if i is not None and _netns_id(n) == i]
    links = [n for n, i in owned.get("links", {}).items() if i is not None and _link_id(n) == i]
    return netns, links


def teardown(layout: LabLayout) -> list[str]:
    """Remove what setup created, and only that (tolerant of half-built or already-removed
    pieces). Returns the names of namespaces and links left alone because this lab did not make
    them, for the caller to say so."""
    spared: list[str] = []
    if layout.net == "netns":
        netns, links = _owned(layout)
        for name in netns:
            _run("ip", "netns", "del", name, check=False)
        for name in links:
            if name != NETNS_BRIDGE:
                _run("ip", "link", "del", name, check=False)
        if NETNS_BRIDGE in links:
            _run("ip", "link", "del", NETNS_BRIDGE, check=False)
        spared = sorted((set(_namespaces(layout)) & existing_netns()) - set(netns))
        spared += _links_present([n for n in _links(layout) if n not in links])
        (layout.home / OWNED).unlink(missing_ok=True)
    elif have_nft():
        # The host's table is made only by a loopback lab (a netns lab's rules live in its namespaces).
        _run("nft", "delete", "table", "inet", NFT_TABLE, check=False)
    return spared


def silence(layout: LabLayout, site: SiteLayout) -> str:
    """Make a site's address drop every packet, as a building without power does.

    Returns how: "link-down" (netns), "nftables-drop" (loopback as root), or "none" when
    neither is possible, in which case peers see refused connections, which is kinder (and
    faster to detect) than a real power cut; drills report which one they measured.
    """
    if layout.net == "netns":
        _run("ip", "link", "set", host_link(site), "down")
        return "link-down"
    if have_nft():
        _run("nft", "add", "table", "inet", NFT_TABLE)
        _run("nft", "add", "chain", "inet", NFT_TABLE, "output", "{ type filter hook output priority 0 ; }")
        _run("nft", "add", "rule", "inet", NFT_TABLE, "output", "ip", "daddr", site.address, "drop",
             "comment", f'"power:{site.name}"')
        _run("nft", "add", "rule", "inet", NFT_TABLE, "output", "ip", "saddr", site.address, "drop",
             "comment", f'"power:{site.name}"')
        return "nftables-drop"
    return "none"


def restore(layout: LabLayout, site: SiteLayout) -> None:
    if layout.net == "netns":
        _run("ip", "link", "set", host_link(site), "up")
        return
    if have_nft():
        _delete_rules(f"power:{site.name}")


ISOLATE_TABLE = "firebreak_isolate"


def isolate(layout: LabLayout, site: SiteLayout) -> str:
    """Cut a site off from the other sites; its processes keep running, and clients outside
    the lab's sites can still reach it (the harshest case: the old primary keeps getting writes).
    """
    others = ", ".join(s.address for s in layout.sites if s is not site)
    if layout.net == "netns":
        rules = (f"table inet {ISOLATE_TABLE} {{\n"
                 f"  chain input {{ type filter hook input priority 0; ip saddr {{ {others} }} drop; }}\n"
                 f"  chain output {{ type filter hook output priority 0; ip daddr {{ {others} }} drop; }}\n}}\n")
        _run("nft", "-f", "-", netns=site.netns, input=rules)
        return "netns-nftables"
    if have_nft():
        _run("nft", "add", "table", "inet", NFT_TABLE)
        _run("nft", "add", "chain", "inet", NFT_TABLE, "output", "{ type filter hook output priority 0 ; }")
        for other in (s for s in layout.sites if s is not site):
            for a, b in ((site.address, other.address), (other.address, site.address)):
                _run("nft", "add", "rule", "inet", NFT_TABLE, "output", "ip", "saddr", a, "ip", "daddr", b, "drop",
                     "comment", f'"isolate:{site.name}"')
        return "loopback-nftables"
    raise LabError("isolating a site needs root (nftables); as a normal user the lab can only cut power")


def heal(layout: LabLayout, site: SiteLayout) -> None:
    if layout.net == "netns":
        _run("nft", "delete", "table", "inet", ISOLATE_TABLE, netns=site.netns, check=False)
        _run("nft", "delete", "table", "inet", ETCD_CUT_TABLE, netns=site.netns, check=False)
    elif have_nft():
        _delete_rules(f"isolate:{site.name}")


# A site's etcd member cut off from the other sites while every database link works (a firewall
# change on the etcd ports, a member's network gone wrong): two of three cut off and etcd has no
# quorum, though every PostgreSQL server still reaches every other.
ETCD_CUT_TABLE = "firebreak_etcd_cut"


def etcd_cut_rules(client_port: int, peer_port: int) -> str:
    """The nft script, run in the site's namespace, that cuts its etcd member off: nothing from
    another site reaches its client or peer port, and its own peer traffic goes nowhere. The
    site's own processes still reach it over loopback, and still reach the other sites' members
    (which have no quorum either). Pure, so the text is tested without nft."""
    return (f"table inet {ETCD_CUT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority 0; iifname != \"lo\" tcp dport {{ {client_port}, {peer_port} }} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; oifname != \"lo\" tcp dport {peer_port} drop; }}\n}}\n")


def cut_etcd(layout: LabLayout, site: SiteLayout) -> str:
    """Cut a site's etcd member off from the other sites; heal undoes it."""
    if layout.net != "netns":
        raise LabError("cutting off an etcd member alone needs the netns lab (as root): on loopback every "
                       "site's processes share the host's one network stack")
    _run("nft", "delete", "table", "inet", ETCD_CUT_TABLE, netns=site.netns, check=False)
    _run("nft", "-f", "-", netns=site.netns, input=etcd_cut_rules(PORTS["etcd"], PORTS["etcd_peer"]))
    return "netns-nftables"


DEGRADE_TABLE = "firebreak_degrade"


def degrade(layout: LabLayout, site: SiteLayout, loss: int, rate_kbit: int) -> str:
    """Random packet loss and a bandwidth limit on a site's links. Added latency would need the
    netem qdisc, which this kernel lacks; the scenario loader refuses it before anything runs."""
    if layout.net == "netns":
        if loss:
            rules = (f"table inet {DEGRADE_TABLE} {{\n"
                     f"  chain input {{ type filter hook input priority 0; iifname != \"lo\" numgen random mod 100 < {loss} drop; }}\n"
                     f"  chain output {{ type filter hook output priority 0; oifname != \"lo\" numgen random mod 100 < {loss} drop; }}\n}}\n")
            _run("nft", "-f", "-", netns=site.netns, input=rules)
        if rate_kbit:
            _run("tc", "qdisc", "replace", "dev", host_link(site), "root", "tbf", "rate", f"{rate_kbit}kbit",
                 "burst", "32kbit", "latency", "400ms")
        return f"netns: {loss}% loss" + (f", {rate_kbit} kbit/s" if rate_kbit else "")
    if not have_nft():
        raise LabError("degrading links needs root (nftables); as a normal user the lab can only cut power")
    if rate_kbit:
        raise LabError("a bandwidth limit needs --net netns (on loopback it would slow every site at once)")
    _run("nft", "add", "table", "inet", NFT_TABLE)
    _run("nft", "add", "chain", "inet", NFT_TABLE, "output", "{ type filter hook output priority 0 ; }")
    for other in (s for s in layout.sites if s is not site):
        for a, b in ((site.address, other.address), (other.address, site.address)):
            _run("nft", "add", "rule", "inet", NFT_TABLE, "output", "ip", "saddr", a, "ip", "daddr", b,
                 "numgen", "random", "mod", "100", "<", str(loss), "drop", "comment", f'"degrade:{site.name}"')
    return f"loopback: {loss}% loss between sites"


def undegrade(layout: LabLayout, site: SiteLayout) -> None:
    if layout.net == "netns":
        _run("nft", "delete", "table", "inet", DEGRADE_TABLE, netns=site.netns, check=False)
        _run("tc", "qdisc", "del", "dev", host_link(site), "root", check=False)
    elif have_nft():
        _delete_rules(f"degrade:{site.name}")


# A cut link: two sites that cannot reach each other while every other link works (a cut fibre,
# a firewall change gone wrong). Neither side hears a refusal: both directions are silent.
CUT_PREFIX = "firebreak_cut_"


def cut_table(peer: str) -> str:
    """The nftables table, in one site's namespace, that silences its link to `peer`. Site names
    are lowercase letters, digits and '-' (inputs.NAME_PATTERN); nft names take '_' instead."""
    return CUT_PREFIX + peer.replace("-", "_")


def cut_rules(peer: str, peer_address: str) -> str:
    """The nft script for one end of a cut link (run in that end's namespace): nothing from the
    peer's address comes in, nothing to it goes out. Pure, so the text is tested without nft."""
    return (f"table inet {cut_table(peer)} {{\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr {peer_address} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr {peer_address} drop; }}\n}}\n")


def cut_comment(a: str, b: str) -> str:
    return f"cut:{a}-{b}"


def cut_loopback_rules(a: SiteLayout, b: SiteLayout) -> list[list[str]]:
    """The `nft add rule` argument lists for a cut link on loopback, where every site shares the
    host's one output chain: the pair's packets dropped both ways, tagged so the link (and only
    it) can be undone. Pure."""
    return [["nft", "add", "rule", "inet", NFT_TABLE, "output", "ip", "saddr", src, "ip", "daddr", dst, "drop",
             "comment", f'"{cut_comment(a.name, b.name)}"']
            for src, dst in ((a.address, b.address), (b.address, a.address))]


def cut(layout: LabLayout, a: SiteLayout, b: SiteLayout) -> str:
    """Silence the link between sites a and b, both ways; every other link stays up."""
    if a.name == b.name:
        raise LabError(f"a link joins two different sites; got {a.name} twice")
    if layout.net == "netns":
        for here, there in ((a, b), (b, a)):
            # Replacing, not adding: cutting a cut link again must not stack a second table.
            _run("nft", "delete", "table", "inet", cut_table(there.name), netns=here.netns, check=False)
            _run("nft", "-f", "-", netns=here.netns, input=cut_rules(there.name, there.address))
        return "netns-nftables"
    if have_nft():
        uncut(layout, a, b)
        _run("nft", "add", "table", "inet", NFT_TABLE)
        _run("nft", "add", "chain", "inet", NFT_TABLE, "output", "{ type filter hook output priority 0 ; }")
        for argv in cut_loopback_rules(a, b):
            _run(*argv)
        return "loopback-nftables"
    raise LabError("cutting a link needs root (nftables); as a normal user the lab can only cut power")


def uncut(layout: LabLayout, a: SiteLayout, b: SiteLayout) -> None:
    """Restore the link between a and b (whichever order it was cut in); a link not cut is left as is."""
    if layout.net == "netns":
        for here, there in ((a, b), (b, a)):
            _run("nft", "delete", "table", "inet", cut_table(there.name), netns=here.netns, check=False)
    elif have_nft():
        _delete_rules(cut_comment(a.name, b.name))
        _delete_rules(cut_comment(b.name, a.name))


def _delete_rules(comment: str) -> None:
    r = _run("nft", "-a", "list", "chain", "inet", NFT_TABLE, "output", check=False)
    for line in r.stdout.splitlines():
        if f'comment "{comment}"' in line and "# handle " in line:
            handle = line.rsplit("# handle ", 1)[1].strip()
            _run("nft", "delete", "rule", "inet", NFT_TABLE, "output", "handle", handle, check=False)

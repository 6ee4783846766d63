"""How long etcd takes to take writes again after two of its three members were cut off at the
network and the cut healed, under the kernel's default retransmission backoff and under the
settings docs/DEPLOY.md ("Kernel settings") discusses, in one run.

Why: a cut drops packets and resets nothing, so etcd's members keep their raft connections and
talk again only at TCP's next retransmission, which the kernel backs off up to 120 s apart. In the
lab the agents agreed on a coordinator 52-54 s after a 60 s cut of etcd healed (bench/replication.py
--faults etcd-cut, 2026-12-06), 5 s after etcd was stopped and started.

Each trial builds three etcd 3.5 members (the lab's etcd, the lab's heartbeat and election
timeout, pre-vote) in three network namespaces of its own (fb-ec1..3, on a bridge fb-ecbr,
10.78.0.0/24), sets the kernel setting in each namespace before etcd starts (some are read when a
socket is made), cuts two members off with the lab's own rules (lab/net.etcd_cut_rules, the
etcd leader's member among them), holds, heals, and times each member's first acknowledged put
after the heal, from a client on the bridge that puts through each member every 0.1 s. Then it
removes everything it made. No PostgreSQL, no agents: etcd alone, so the figure is etcd's.

Run (as root: network namespaces; no lab may be running, none is touched):
  .venv/bin/python bench/etcd_cut.py --holds 10,25,60 --settings default,rto-max-1000,retries2-5
Writes docs/bench/etcd-cut.json and prints the Markdown table for docs/DEPLOY.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from firebreak.lab.net import ETCD_CUT_TABLE, etcd_cut_rules, existing_netns  # noqa: E402
from firebreak.lab.runtime import etcd_binary  # noqa: E402

BRIDGE, SUBNET = "fb-ecbr", "10.78.0"
CLIENT, PEER = 22379, 22380
MEMBERS = (1, 2, 3)
# name -> {sysctl path: value} written in each member's namespace before etcd starts
SETTINGS = {"default": {},
            "rto-max-1000": {"/proc/sys/net/ipv4/tcp_rto_max_ms": 1000},
            "retries2-5": {"/proc/sys/net/ipv4/tcp_retries2": 5}}
PATIENCE = 150.0   # seconds after the heal before a member counts as never back


def run(*argv: str, ns: str | None = None, check: bool = True, input: str | None = None) -> None:
    if ns:
        argv = ("ip", "netns", "exec", ns, *argv)
    r = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")


def url(i: int) -> str:
    return f"http://{SUBNET}.1{i}:{CLIENT}"


class Rig:
    """Three etcd members in namespaces of their own; `with` removes what it made, and only that
    (names that exist already are refused, not reused)."""

    def __init__(self, setting: dict[str, int]):
        self.setting, self.dir = setting, Path(tempfile.mkdtemp(prefix="fb-etcdcut-"))
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.made: list[tuple[str, str]] = []   # ("netns" | "link", name), in the order made
        self.failed = False

    def __enter__(self) -> "Rig":
        names = {f"fb-ec{i}" for i in MEMBERS}
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        taken = sorted(names & existing_netns()) + [n for n in (BRIDGE, *(f"fb-ecv{i}" for i in MEMBERS))
                                               if f" {n}:" in links or f" {n}@" in links]
        if taken:
            raise SystemExit(f"{', '.join(taken)} exist already: another run of this bench, or left behind "
                             "(`ip netns del NAME`, `ip link del NAME`)")
        try:
            run("ip", "link", "add", BRIDGE, "type", "bridge")
            self.made.append(("link", BRIDGE))
            run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
            run("ip", "link", "set", BRIDGE, "up")
            for i in MEMBERS:
                ns = f"fb-ec{i}"
                run("ip", "netns", "add", ns)
                self.made.append(("netns", ns))
                run("ip", "link", "set", "lo", "up", ns=ns)
                for path, value in self.setting.items():
                    run("sh", "-c", f"echo {value} > {path}", ns=ns)
                run("ip", "link", "add", f"fb-ecv{i}", "type", "veth", "peer", "name", f"fb-ecp{i}")
                self.made.append(("link", f"fb-ecv{i}"))
                run("ip", "link", "set", f"fb-ecp{i}", "netns", ns)
                run("ip", "addr", "add", f"{SUBNET}.1{i}/24", "dev", f"fb-ecp{i}", ns=ns)
                run("ip", "link", "set", f"fb-ecp{i}", "up", ns=ns)
                run("ip", "link", "set", f"fb-ecv{i}", "master", BRIDGE)
                run("ip", "link", "set", f"fb-ecv{i}", "up")
            cluster = ",".join(f"m{i}=http://{SUBNET}.1{i}:{PEER}" for i in MEMBERS)
            for i in MEMBERS:
                a = f"{SUBNET}.1{i}"
                argv = ["ip", "netns", "exec", f"fb-ec{i}", etcd_binary(), "--name", f"m{i}",
                        "--data-dir", str(self.dir / f"m{i}"), "--listen-client-urls", f"http://{a}:{CLIENT}",
                        "--advertise-client-urls", f"http://{a}:{CLIENT}", "--listen-peer-urls", f"http://{a}:{PEER}",
                        "--initial-advertise-peer-urls", f"http://{a}:{PEER}", "--initial-cluster", cluster,
                        "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000",
                        "--pre-vote", "--log-level", "warn"]
                self.logs.append(open(self.dir / f"m{i}.log", "w"))
                # `ip netns exec` becomes etcd: the PID kept is etcd's own
                self.procs.append(subprocess.Popen(argv, stdout=self.logs[-1], stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 30
            while not all(put(i, 1.0) for i in MEMBERS):
                if time.monotonic() > deadline:
                    raise SystemExit(f"etcd did not form in 30 s; its logs are kept in {self.dir}")
                time.sleep(0.2)
            return self
        except BaseException:
            self.failed = True
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:   # ours, by PID
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.logs:
            f.close()
        for kind, name in reversed(self.made):
            if kind == "netns":
                run("ip", "netns", "del", name, check=False)
            else:
                run("ip", "link", "del", name, check=False)
        if not (self.failed or exc and exc[0] is not None):
            shutil.rmtree(self.dir, ignore_errors=True)


def put(i: int, timeout: float = 0.6) -> bool:
    try:
        r = httpx.post(url(i) + "/v3/kv/put", timeout=timeout,
                       json={"key": base64.b64encode(f"k{i}".encode()).decode(), "value": "eA=="})
        return r.status_code == 200
    except httpx.HTTPError:
        return False


def leader_member() -> int:
    """The member (1-3) that leads etcd now."""
    r = httpx.post(url(1) + "/v3/maintenance/status", json={}, timeout=2).json()
    for i in MEMBERS:
        if httpx.post(url(i) + "/v3/maintenance/status", json={}, timeout=2).json()["header"]["member_id"] == r["leader"]:
            return i
    raise SystemExit("no member leads etcd")


def trial(setting: str, hold: float) -> dict:
    with Rig(SETTINGS[setting]):
        leader = leader_member()
        cut = [leader, next(i for i in MEMBERS if i != leader)]
        back: dict[int, float] = {}

        def watch(i: int, healed: float) -> None:
            while time.monotonic() < healed + PATIENCE:
                if put(i):
                    back[i] = round(time.monotonic() - healed, 2)
                    return
                time.sleep(0.1)
        rules = etcd_cut_rules(CLIENT, PEER)
        for i in cut:
            run("nft", "-f", "-", ns=f"fb-ec{i}", input=rules)
        time.sleep(hold)
        for i in cut:
            run("nft", "delete", "table", "inet", ETCD_CUT_TABLE, ns=f"fb-ec{i}")
        healed = time.monotonic()
        threads = [threading.Thread(target=watch, args=(i, healed)) for i in MEMBERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {"setting": setting, "hold_s": hold, "leader": f"m{leader}", "cut": [f"m{i}" for i in cut],
            "back_s": {f"m{i}": back.get(i) for i in MEMBERS}}


def table(rows: list[dict], settings: list[str], holds: list[float]) -> str:
    # A run is back when its slowest member takes writes; a cell is the range of that over runs.
    def cell(hold: float, setting: str) -> str:
        runs = [list(r["back_s"].values()) for r in rows if r["hold_s"] == hold and r["setting"] == setting]
        if not runs:
            return "–"
        if any(v is None for run in runs for v in run):
            return f"never ({PATIENCE:.0f} s)"
        vals = [max(run) for run in runs]
        lo, hi = min(vals), max(vals)
        return f"{lo:.2f} s" if lo == hi else f"{lo:.2f}–{hi:.2f} s"
    lines = ["| cut | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    lines += [f"| {h:g} s | " + " | ".join(cell(h, s) for s in settings) + " |" for h in holds]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--holds", default="10,25,60", help="seconds each cut lasts, comma-separated")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"kernel settings to compare: {', '.join(SETTINGS)}")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "etcd-cut.json"))
    args = ap.parse_args()
    settings = args.settings.split(",")
    if unknown := [s for s in settings if s not in SETTINGS]:
        ap.error(f"--settings: unknown {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    try:
        holds = [float(h) for h in args.holds.split(",")]
    except ValueError:
        ap.error(f"--holds: {args.holds!r} is not a list of seconds, e.g. 10,25,60")
    if os.geteuid() != 0:
        ap.error("cutting etcd members off needs network namespaces of its own, which need root")
    for s in settings:
        path = next(iter(SETTINGS[s]), None)
        if path and not os.path.exists(path):
            ap.error(f"--settings {s}: this kernel has no {path} (tcp_rto_max_ms needs Linux 6.15)")
    # A stopped bench removes what it made (Rig.__exit__), as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))
    rows: list[dict] = []
    started = datetime.now(timezone.utc)
    for rep in range(args.repeat):
        for hold in holds:
            for s in settings:
                print(f"[{rep + 1}/{args.repeat}] {s}: cut two members off for {hold:g} s", flush=True)
                rows.append(trial(s, hold))
                print("  " + json.dumps(rows[-1]["back_s"]), flush=True)
                doc = {"command": "bench/etcd_cut.py " + " ".join(sys.argv[1:]), "started": started.isoformat(),
                       "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
                                  f"Linux {platform.release()}", "etcd": etcd_binary(), "rows": rows}
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(doc, indent=2))
    print(table(rows, settings, holds))


if __name__ == "__main__":
    main()

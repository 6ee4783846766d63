"""Power cuts of the primary's site: Firebreak vs Patroni alone, interleaved in one run.

Brings up a lab with agents. Each round cuts the primary's site under load from concurrent
writers (through every site's door, retrying with the same idempotency key) and readers in the
surviving sites, measures write unavailability (fault -> first acknowledged write sent after
it), read failures and acknowledged writes lost, then powers the site back on and waits for it
to rejoin. "Patroni alone" rounds freeze the agents' automation, so both modes run on the same
lab, the same machine, minutes apart.

With `--modes firebreak,firebreak+flood` the rounds alternate between a quiet console and one
flooded: 16 concurrent anonymous requests (wrong logins and wrong Bearer tokens) at each
surviving site's console, from two seconds before the cut until writes resume, as in the run
that once got a healthy site voted dead. The failover must not notice.

Run: .venv/bin/python bench/failover.py --rounds 20 [--modes firebreak,patroni]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import checks  # noqa: E402
from firebreak.drill.harness import check_consistency  # noqa: E402
from firebreak.drill.runner import set_frozen  # noqa: E402
from firebreak.drill.charts import distribution_svg, percentile  # noqa: E402
from firebreak.drill.workload import ConsoleFlood, History, Reader, Router, Writer, seed_report  # noqa: E402
from firebreak.lab import lab  # noqa: E402
from firebreak.lab.state import lab_home, load_secrets  # noqa: E402


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def one_round(mode: str, clients: int, token: str) -> dict:
    mode, _, extra = mode.partition("+")
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    if mode == "firebreak":
        # The steady state of a deployment with agents: etcd's leader is not in the primary's site.
        st = wait_for(lambda: (lambda s: s if s["healthy"] and lab.etcd_leader_site() != s["primary"] else None)(
            lab.status()), 30, "agents to settle etcd leadership")
    # What the last round's heal left must be whole before this one measures anything: etcd 3.5.1
    # (the lab's) can lose an entry in a member killed mid-apply (etcd-io/etcd#13766), and a
    # coordinator reading that member refused two failovers of bench/detector.py's third run.
    if problems := check_consistency(st):
        raise RuntimeError("the lab is not consistent after the last heal, so no further round would "
                           "measure Firebreak: " + "; ".join(problems))
    set_frozen(st, mode == "patroni", token)
    victim = st["primary"]
    survivors = [n for n in st["sites"] if n != victim]
    doors = {n: s["door"] for n, s in st["sites"].items()}
    report_id = seed_report(doors[survivors[0]])
    history, stop = History(), threading.Event()
    # With Firebreak, clients follow the control plane's routing table; Patroni alone has none,
    # so its clients only have their own circuit breakers.
    router = Router({n: s["console"] for n, s in st["sites"].items()}, stop) if mode == "firebreak" else None
    threads = [Writer(doors, history, stop, seed=i, router=router) for i in range(clients)]
    if router is not None:
        threads.append(router)
    admin = load_secrets(lab_home()).app_admin
    threads += [Reader(n, doors[n], report_id, history, stop, token=admin) for n in survivors]
    flood = ConsoleFlood([st["sites"][n]["console"] for n in survivors]) if extra == "flood" else None
    if flood is not None:
        threads.append(flood)
    for t in threads:
        t.start()
    time.sleep(2.0)
    leader_at_cut = lab.etcd_leader_site()
    # The cut is when the site goes silent, the first thing power_off does, not when the call
    # returns: stopping and killing the site's processes after that took up to 0.9 s, and a cut
    # stamped after it made the write unavailability look that much shorter.
    before, before_wall = time.monotonic(), time.time()
    cut = before + (lab.power_off(victim).get("at", before_wall) - before_wall)
    try:
        wait_for(lambda: checks.write_rto(history.ops, cut) is not None, 90, "writes to resume")
        time.sleep(1.0)
    finally:
        stop.set()
        if flood is not None:
            flood.stop_event.set()
        for t in threads:
            t.join(timeout=10)
    ops = list(history.ops)
    rto = checks.write_rto(ops, cut)
    with psycopg.connect(lab.status()["postgres_dsn"]) as conn:
        stored = checks.stored_counts(r[0] for r in conn.execute(
            "SELECT idempotency_key FROM reports WHERE idempotency_key IS NOT NULL"))
    lost = checks.lost_writes(ops, set(stored))
    result = {
        "mode": mode + (f"+{extra}" if extra else ""), "victim": victim,
        "flood_answers": {str(k): v for k, v in flood.answers.items()} if flood is not None else None, "rto_s": round(rto, 3),
        "max_write_gap_s": round(checks.max_write_gap(ops, cut - 1.0, max(o.complete for o in ops)), 3),
        "acked": len(checks.acked(ops)), "lost": len(lost), "duplicates": len(checks.duplicates(stored)),
        "read_failures": checks.read_failures(ops, survivors),
        "split_brain": bool(checks.split_brain(ops)),
        "silenced": lab.status()["sites"][victim]["silenced"],
    }
    lab.power_on(victim)
    wait_for(lambda: lab.status()["healthy"], 120, f"{victim} to rejoin and every standby to stream")
    if mode == "patroni":
        set_frozen(lab.status(), False, token)  # the lab's normal state between rounds
    result["etcd_leader_at_cut"] = leader_at_cut
    return result


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(statistics.median(values), 3), "p95": round(percentile(values, 95), 3),
            "max": round(max(values), 3), "min": round(min(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20, help="power cuts per mode")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    ap.add_argument("--keep-lab", action="store_true", help="use a running lab and leave it up")
    ap.add_argument("--modes", default="firebreak,patroni",
                    help="two modes interleaved: firebreak, patroni, firebreak+flood")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if not args.keep_lab:
        lab.down()
        lab.up(agents=True, progress=lambda m: print("  lab:", m, flush=True))
    token = load_secrets(lab_home()).ops_token
    results = []
    try:
        for i in range(args.rounds):
            for mode in (modes if i % 2 == 0 else list(reversed(modes))):
                r = one_round(mode, args.clients, token)
                results.append(r)
                print(f"round {i + 1:>2} {mode:<9} cut {r['victim']:<8} write RTO {r['rto_s']:6.2f} s  "
                      f"acked {r['acked']:>6}  lost {r['lost']}  read failures {sum(r['read_failures'].values())}"
                      f"  split brain {r['split_brain']}", flush=True)
    finally:
        if not args.keep_lab:
            lab.down()
    by_mode = {m: [r for r in results if r["mode"] == m] for m in modes}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds, "clients": args.clients,
        "summary": {m: {"write_rto_s": summary([r["rto_s"] for r in rs]),
                        "lost": sum(r["lost"] for r in rs), "acked": sum(r["acked"] for r in rs),
                        "read_failures": sum(sum(r["read_failures"].values()) for r in rs),
                        "split_brain": any(r["split_brain"] for r in rs)} for m, rs in by_mode.items() if rs},
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "failover" if modes == ["firebreak", "patroni"] else "failover-" + "-".join(m.replace("+", "-") for m in modes)
    labels = {"patroni": "Patroni alone", "firebreak": "Firebreak", "firebreak+flood": "Firebreak, consoles flooded"}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.svg").write_text(distribution_svg(
        {labels.get(m, m): [r["rto_s"] for r in by_mode[m]] for m in reversed(modes)},
        f"Write unavailability after a power cut of the primary's site ({args.rounds} cuts each)"))
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {out / name}.json and {out / name}.svg")


if __name__ == "__main__":
    main()

"""From a recorded history to a drill report and its verdict. Pure: no lab, no clock."""

from __future__ import annotations

from typing import Iterable, Mapping

from firebreak.drill import checks, objectives
from firebreak.drill.workload import Op

# After a site comes back, its own door needs a moment; reads there are not judged meanwhile.
REJOIN_GRACE = 5.0


def _in_any(op: Op, windows: Iterable[tuple[float, float]]) -> bool:
    """Whether the operation overlaps a fault window (one in flight when the fault hit counts)."""
    return any(op.invoke <= b and op.complete >= a for a, b in windows)


def judge(*, scenario, ops: list[Op], stored: Mapping[str, int], sites: list[str], start: float, end: float,
          faults: list[tuple[str, str, float, float]], silenced: Mapping[str, str | None],
          disagreements: list[str] | None = None, ordinary: tuple[str, set[str]] | None = None,
          findings: list[str] | None = None) -> dict:
    """faults: (kind, site, since, healed_at), times on the same monotonic clock as ops. `findings`:
    what the checks during the drill found (after each heal), each a failure as it reads."""
    windows: dict[str, list[tuple[float, float]]] = {s: [] for s in sites}
    for kind, site, since, healed in faults:
        windows.setdefault(site, []).append((since, healed + REJOIN_GRACE))
    lost = checks.lost_writes(ops, set(stored))
    dups = checks.duplicates(stored)
    brain = checks.split_brain(ops)
    reads = [o for o in ops if o.kind == "read" and not _in_any(o, windows.get(o.site, []))]
    read_failures = checks.read_failures(reads, sites)
    reads_failed = [{"site": o.site, "at_s": round(o.invoke - start, 3), "took_s": round(o.complete - o.invoke, 3),
                     "status": o.status or "no answer"} for o in reads if o.outcome != "ok"]
    judged_ops = [o for o in ops if o.kind == "ops" and not _in_any(o, windows.get(o.site, []))]
    ops_by_site = checks.ops_actions(judged_ops)
    ops_failed = [{"site": o.site, "action": o.key, "at_s": round(o.invoke - start, 3),
                   "took_s": round(o.complete - o.invoke, 3),
                   "status": o.status or "no answer", "detail": o.detail} for o in judged_ops if o.outcome != "ok"]
    per_fault = []
    acks, ops_actions = checks.Acks(ops), [o for o in ops if o.kind == "ops"]
    for kind, site, since, healed in faults:
        rto = acks.rto(since)
        during = [o for o in ops_actions if since <= o.invoke <= healed and not _in_any(o, windows.get(o.site, []))]
        per_fault.append({
            "fault": kind, "site": site, "at_s": round(since - start, 3), "healed_at_s": round(healed - start, 3),
            "write_rto_s": None if rto is None else round(rto, 3),
            "ops_during_fault": checks.ops_actions(during),
            "start_wall": None, "end_wall": None,
        })
    failures = []
    ordinary_doc = None
    if ordinary is not None:
        door, stored_sql = ordinary
        ordinary_doc = ordinary_client(ops, stored_sql, door, start, end, faults)
        if ordinary_doc["acked_lost"]:
            failures.append(f"{ordinary_doc['acked_lost']} writes acknowledged to the ordinary client through "
                            f"{door}'s database door are not in the database")
    if not checks.acked(ops):
        failures.append("no write was ever acknowledged")
    if dups:
        failures.append(f"{len(dups)} duplicate reports created by retries")
    if brain:
        failures.append("two primaries acknowledged writes in overlapping intervals")
    failures += [f"replicas disagree after the heal: {d}" for d in disagreements or []]
    failures += list(findings or [])
    max_gap = round(checks.max_write_gap(ops, start, end), 3)
    outcomes = objectives.evaluate(scenario.objectives, {
        "faults": per_fault, "max_write_gap_s": max_gap, "acked_lost": len(lost),
        "read_failures": read_failures, "ops_actions": ops_by_site})
    details = {
        "read_failures": ", ".join(f"{s} {n}" for s, n in read_failures.items() if n) + "; " + "; ".join(
            f"at {f['site']} {f['at_s']:g} s: {f['status']} after {f['took_s']:g} s" for f in reads_failed[:3]),
        "failed_ops": "; ".join(f"{f['action']} at {f['site']} {f['at_s']:g} s: {f['status']} after "
                                f"{f['took_s']:g} s" + (f" ({f['detail']})" if f["detail"] else "")
                                for f in ops_failed[:3]),
    }
    for o in outcomes:
        if not o.met:
            detail = details.get(o.objective)
            failures.append(o.reason + (f" ({detail})" if detail else ""))
    rtos = [f["write_rto_s"] for f in per_fault]
    return {
        "verdict": "fail" if failures else "pass",
        "failures": failures,
        "scenario": scenario.model_dump(),
        "acked_writes": len(checks.acked(ops)),
        "unknown_writes": sum(1 for o in ops if o.kind == "write" and o.outcome == "unknown"),
        "acked_lost": len(lost),
        "lost_keys": lost[:100],
        "duplicates": len(dups),
        "write_rto_s": max((r for r in rtos if r is not None), default=None),
        "max_write_gap_s": max_gap,
        "objectives": [o.as_dict() for o in outcomes],
        "consistency": {"checked": disagreements is not None, "problems": list(disagreements or [])},
        "read_failures": read_failures,
        "reads": len([o for o in ops if o.kind == "read"]),
        "reads_failed": reads_failed[:100],  # when and how, to tell a slow door from a refusal
        "split_brain": bool(brain),
        "split_brain_evidence": [[a.__dict__, b.__dict__] for a, b in brain][:10],
        "primaries": [e.__dict__ | {"first_ack_s": round(e.first_ack - start, 3), "last_ack_s": round(e.last_ack - start, 3)}
                      for e in checks.primary_epochs(ops)],
        "ops_actions": ops_by_site,
        "ops_failed": ops_failed[:100],
        "faults": per_fault,
        "power_cut_mode": {s: m for s, m in silenced.items() if m},
        "duration_s": round(end - start, 3),
        # A client nobody tuned (libpq defaults, reconnect on error) through a surviving site's
        # database door: what the company's own services see.
        "ordinary_client": ordinary_doc,
    }


def ordinary_client(ops: list[Op], stored: set[str], door: str, start: float, end: float,
                    faults: list[tuple[str, str, float, float]]) -> dict:
    acks = checks.Acks(ops, "sql")
    rtos = [acks.rto(since) for _, _, since, _ in faults]
    lost = checks.lost_writes(ops, stored, "sql")
    acked = checks.acked(ops, "sql")
    return {
        "door": door,
        "client": "psycopg, libpq defaults, reconnect on error",
        "acked_writes": len(acked),
        "unknown_writes": sum(1 for o in ops if o.kind == "sql" and o.outcome == "unknown"),
        "acked_lost": len(lost),
        "lost_keys": lost[:100],
        "write_unavailability_s": [None if r is None else round(r, 3) for r in rtos],
        "max_write_gap_s": round(checks.max_write_gap(ops, start, end, "sql"), 3) if acked else None,
    }

"""What losing sites does to a topology: a pure function of the model and the lost sites.

The topology is compiled once into flat integer arrays (a plan) so that analysing every single-site
and site-pair scenario of a large topology stays well under a second per thousand services. Each
scenario evaluates services in dependency order; loops that pass through recovery tools (a
database whose manual failover needs a console that logs in through that same database) are
solved as a least fixed point: nothing in such a loop comes up unless something outside it
brings it up, which is exactly the deadlock the Pangyo fire exposed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable, Mapping

from firebreak.control.detector import majority
from firebreak.topology.model import Failover, Kind, Replication, Topology

UP, DEGRADED, DOWN = 0, 1, 2
STATE_NAMES = ("up", "degraded", "down")

# Findings whose presence makes `check` fail (exit 1).
FAILING_KINDS = frozenset({"down", "unrecoverable", "quorum-lost", "data-loss"})
FINDING_ORDER = ("data-loss", "quorum-lost", "unrecoverable", "down", "degraded", "unmanageable", "stranded")

_SERVICE, _DATABASE, _QUORUM = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a scenario does to one service (the lost sites are the scenario's). A slotted
    dataclass, so the JSON writer (orjson) serialises it natively, fields in this order."""

    kind: str
    service: str
    path: tuple[str, ...]  # the dependency chain that explains it, this service first
    reason: str

    @property
    def failing(self) -> bool:
        return self.kind in FAILING_KINDS


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    lost: tuple[str, ...]
    states: Mapping[str, str]
    reasons: Mapping[str, str]  # only for services that are not up
    findings: tuple[Finding, ...]

    @property
    def failing(self) -> bool:
        return any(f.failing for f in self.findings)

    def kinds(self) -> dict[str, int]:
        """How many findings of each kind."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def count(self, state: str) -> int:
        return sum(1 for s in self.states.values() if s == state)

    def severity(self) -> tuple:
        """Sort key: worse scenarios compare greater."""
        kinds = [f.kind for f in self.findings]
        return (sum(1 for k in kinds if k in FAILING_KINDS), self.count("down"),
                self.count("degraded"), len(kinds))


@dataclass(frozen=True, slots=True)
class Report:
    topology: str
    sites: tuple[str, ...]
    services: tuple[str, ...]
    scenarios: tuple[ScenarioResult, ...]
    summary: Mapping = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        return any(s.failing for s in self.scenarios)

    def worst_first(self) -> list[ScenarioResult]:
        return sorted(self.scenarios, key=lambda s: s.severity(), reverse=True)


def scenarios(sites: Iterable[str], pairs: bool = False) -> list[tuple[str, ...]]:
    """Every single-site loss, then (with pairs) every two-site loss, in declared order."""
    sites = list(sites)
    out = [(s,) for s in sites]
    if pairs:
        out += list(combinations(sites, 2))
    return out


class Plan:
    """The topology as flat arrays indexed by service number, built once per analysis run."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self.names = list(topology.services)
        idx = {n: i for i, n in enumerate(self.names)}
        self.site_bit = {s: 1 << i for i, s in enumerate(topology.sites)}
        svcs = [topology.services[n] for n in self.names]
        self.place = [tuple((self.site_bit[s], c) for s, c in v.replicas.items() if c > 0) for v in svcs]
        self.total = [v.total for v in svcs]
        self.needs = [v.needs for v in svcs]
        self.kind = [_DATABASE if v.kind == Kind.DATABASE else _QUORUM if v.kind == Kind.QUORUM else _SERVICE
                     for v in svcs]
        self.deps = [tuple(idx[d] for d in v.depends_on) for v in svcs]
        self.tools = [tuple(idx[t] for t in v.recovery) for v in svcs]
        # Only a database with manual failover needs its tools to stay up through a loss.
        self.gate = [self.tools[i] if v.kind == Kind.DATABASE and v.failover == Failover.MANUAL else ()
                     for i, v in enumerate(svcs)]
        self.primary_bit = [self.site_bit.get(v.primary, 0) if v.kind == Kind.DATABASE else 0 for v in svcs]
        self.is_async = [v.kind == Kind.DATABASE and v.replication == Replication.ASYNC for v in svcs]
        # Quorum commit: the sites of a database's standbys, its voters. Patroni runs it as ANY 1
        # of every standby (synchronous_node_count 1, deploy/components.py), so an acknowledged
        # commit may be on one voter alone, and a voter is promoted only with a vote from every
        # other (Patroni's ha.py _is_healthiest_node: quorum = voters - 1; control/failover.py
        # refuses the same). Losing the primary's site together with any voter loses the failover.
        self.voter_bits = [_voter_bits(v, self.site_bit) if v.replication == Replication.QUORUM else 0 for v in svcs]
        # A database that fails over by itself but whose clients dial its hosts directly: after
        # its primary's site is lost, clients blocked on the dead primary wait for TCP.
        self.strands = [v.kind == Kind.DATABASE and v.failover == Failover.AUTO and not v.doors for v in svcs]
        self.dependents: list[list[int]] = [[] for _ in svcs]
        for i, v in enumerate(svcs):
            for d in self.deps[i]:
                self.dependents[d].append(i)
        self.components = _components(len(svcs), [self.deps[i] + self.gate[i] for i in range(len(svcs))])
        self.order = [i for comp in self.components for i in comp]
        self.looped = frozenset(i for comp in self.components if len(comp) > 1 for i in comp)
        # services that may produce data-loss, unrecoverable or unmanageable findings
        self.watched = [i for i in range(len(svcs)) if self.tools[i] or self.primary_bit[i]]
        self.dep_text: dict[int, str] = {}  # (cause * 3 + its state) -> "depends on X, which is down"

    def evaluate(self, lost_mask: int) -> tuple[list[int], list[int], list[tuple]]:
        """States, causes (index of the service that explains it, or -1) and reason codes."""
        n = len(self.names)
        state = [DOWN] * n  # the least fixed point starts from "nothing is up"
        cause = [-1] * n
        why: list[tuple] = [()] * n
        place, total, needs, kind, deps, gate, pbit, voters = (
            self.place, self.total, self.needs, self.kind, self.deps, self.gate, self.primary_bit, self.voter_bits)

        def step(i: int) -> tuple[int, int, tuple]:
            alive = total[i]
            for bit, count in place[i]:
                if bit & lost_mask:
                    alive -= count
            k = kind[i]
            if k == _QUORUM and alive * 2 <= total[i]:
                return DOWN, -1, ("quorum", alive, total[i])
            if alive == 0:
                return DOWN, -1, ("no-instance",)
            if k == _DATABASE and pbit[i] & lost_mask:
                if voters[i] & lost_mask:
                    return DOWN, -1, ("quorum-voter",)
                for t in gate[i]:
                    if state[t] == DOWN:
                        return DOWN, t, ("failover-blocked",)
            st, c, w = UP, -1, ()
            if alive < needs[i]:
                st, w = DEGRADED, ("capacity", alive, needs[i])
            for d in deps[i]:
                s = state[d]
                if s == DOWN:
                    return DOWN, d, ("dep",)
                if s == DEGRADED and st == UP:
                    st, c, w = DEGRADED, d, ("dep",)
            return st, c, w

        for comp in self.components:
            if len(comp) == 1:
                i = comp[0]
                state[i], cause[i], why[i] = step(i)
                continue
            changed = True
            while changed:  # monotone: states only improve, so this ends within 2*len(comp)+1 rounds
                changed = False
                for i in comp:
                    r = step(i)
                    if r[0] != state[i] or r[1] != cause[i]:
                        changed = True
                    state[i], cause[i], why[i] = r
        return state, cause, why


def analyse(topology: Topology, lost: Iterable[str], plan: Plan | None = None) -> ScenarioResult:
    """What happens to every service when the given sites are lost."""
    plan = plan or Plan(topology)
    lost = tuple(lost)
    mask = 0
    for s in lost:
        mask |= plan.site_bit[s]
    state, cause, why = plan.evaluate(mask)
    names = plan.names
    lost_set = set(lost)

    # Paths are built in evaluation order, so a cause's path already exists and each path is
    # one tuple concatenation; only members of recovery loops need the loop-aware walk.
    paths: list = [None] * len(names)
    dep_text = plan.dep_text
    reasons: dict[str, str] = {}
    buckets: dict[str, list[Finding]] = {k: [] for k in FINDING_ORDER}
    for i in plan.order:
        st = state[i]
        if st == UP:
            continue
        c = cause[i]
        if c < 0:
            paths[i] = (names[i],)
        elif paths[c] is not None and i not in plan.looped:
            paths[i] = (names[i],) + paths[c]
        else:
            paths[i] = _walk(i, cause, names)
        w = why[i]
        name = names[i]
        if w[0] == "dep":
            # The most common reason by far; the same text recurs across scenarios, so build it once.
            key = c * 3 + state[c]
            reason = dep_text.get(key)
            if reason is None:
                reason = dep_text[key] = f"depends on {names[c]}, which is {STATE_NAMES[state[c]]}"
        else:
            reason = _reason_text(plan, i, w, cause, state, lost_set)
        reasons[name] = reason
        kind = "degraded" if st == DEGRADED else "quorum-lost" if w[0] == "quorum" else "down"
        buckets[kind].append(Finding(kind, name, paths[i], reason))

    for i in plan.watched:
        name, st = names[i], state[i]
        if plan.primary_bit[i] & mask:
            if why[i] and why[i][0] == "no-instance":
                buckets["data-loss"].append(Finding("data-loss", name, (name,),
                                                     "every copy of the data was in the lost sites"))
            elif plan.is_async[i]:
                buckets["data-loss"].append(Finding(
                    "data-loss", name, (name,),
                    f"primary site {topology.services[name].primary} lost and replication "
                    "is async: writes acknowledged but not yet copied are gone"))
            if plan.strands[i] and st != DOWN:
                primary = topology.services[name].primary
                for d in plan.dependents[i]:
                    if state[d] != DOWN:
                        buckets["stranded"].append(Finding(
                            "stranded", names[d], (names[d], name),
                            f"{name} fails over, but {names[d]} reaches its hosts directly: clients blocked on "
                            f"the primary lost in {primary} wait for TCP to give up (minutes with libpq's "
                            f"defaults); put a database door in each site (doors: true on {name})"))
        down_tools = [t for t in plan.tools[i] if state[t] == DOWN]
        if down_tools:
            tools = ", ".join(names[t] for t in down_tools)
            chain = (name,) + paths[down_tools[0]]
            if st == DOWN:
                buckets["unrecoverable"].append(Finding(
                    "unrecoverable", name, chain,
                    f"down, and the tools needed to recover it are down too: {tools}"))
            else:
                buckets["unmanageable"].append(Finding(
                    "unmanageable", name, chain,
                    f"still {STATE_NAMES[st]}, but nobody can operate it: {tools} down"))
    findings: list[Finding] = []
    for k in FINDING_ORDER:
        findings += sorted(buckets[k], key=_by_service)
    return ScenarioResult(lost=lost, states=dict(zip(names, [STATE_NAMES[x] for x in state])),
                          reasons=reasons, findings=tuple(findings))


def _voter_bits(svc, site_bit: Mapping[str, int]) -> int:
    """The sites holding a database's standbys: every member but the primary, the primary's own
    site too when it holds a second member."""
    bits = 0
    for s, n in svc.replicas.items():
        if n > (1 if s == svc.primary else 0):
            bits |= site_bit[s]
    return bits


def _by_service(f: Finding) -> str:
    return f.service


def _walk(i: int, cause: list[int], names: list[str]) -> tuple[str, ...]:
    """The cause chain from i, stopping where it closes a loop (and naming that service)."""
    seen, out = set(), []
    while i >= 0 and i not in seen:
        seen.add(i)
        out.append(names[i])
        i = cause[i]
    if i >= 0:
        out.append(names[i])
    return tuple(out)


def _reason_text(plan: Plan, i: int, why: tuple, cause: list[int], state: list[int], lost: set[str]) -> str:
    code = why[0]
    if code == "dep":
        return f"depends on {plan.names[cause[i]]}, which is {STATE_NAMES[state[cause[i]]]}"
    svc = plan.topology.services[plan.names[i]]
    if code == "no-instance":
        return f"no instance survives (all in {', '.join(sorted(set(svc.sites()) & lost))})"
    if code == "quorum":
        return f"quorum lost: {why[1]} of {why[2]} members alive, a strict majority needs {majority(why[2])}"
    if code == "capacity":
        return f"{why[1]} of the {why[2]} instances it needs survive"
    if code == "quorum-voter":
        gone = ", ".join(f"{s} (the primary's own second member)" if s == svc.primary else s
                         for s in svc.sites() if plan.site_bit[s] & plan.voter_bits[i] and s in lost)
        standbys = svc.total - 1
        return (f"primary site {svc.primary} lost with a standby in {gone}: under quorum commit (ANY 1 of "
                f"{standbys} standbys) an acknowledged write may be only there, so Patroni promotes no standby "
                "until that site is back (its quorum rule: a voter needs every other voter's vote); a failover "
                "forced onto a named standby would lose that write")
    if code == "failover-blocked":
        return (f"primary site {svc.primary} lost; manual failover needs {plan.names[cause[i]]}, "
                f"which is down")
    return code


def analyse_all(topology: Topology, pairs: bool = False) -> Report:
    plan = Plan(topology)
    results = tuple(analyse(topology, lost, plan) for lost in scenarios(topology.sites, pairs))
    return Report(topology=topology.name, sites=topology.sites, services=tuple(plan.names),
                  scenarios=results, summary=summarise(results))


def summarise(results: Iterable[ScenarioResult]) -> dict:
    return summary_of((r.lost, r.failing, r.kinds()) for r in results)


def summary_of(rows: Iterable[tuple[tuple[str, ...], bool, Mapping[str, int]]]) -> dict:
    """The report's summary from each scenario's lost sites, failing flag and findings by kind."""
    rows = list(rows)
    by_kind: dict[str, int] = {k: 0 for k in FINDING_ORDER}
    for _, _, kinds in rows:
        for k, n in kinds.items():
            by_kind[k] += n
    failing = [list(lost) for lost, bad, _ in rows if bad]
    return {
        "scenarios": len(rows),
        "failing_scenarios": len(failing),
        "failing": failing,
        "findings": by_kind,
        "verdict": "fail" if failing else "pass",
    }


def _components(n: int, edges: list[tuple[int, ...]]) -> list[list[int]]:
    """Strongly connected components, dependencies before dependants (iterative Tarjan)."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        work = [(root, 0)]
        while work:
            v, pi = work[-1]
            if pi == 0 and index[v] == -1:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            if pi < len(edges[v]):
                work[-1] = (v, pi + 1)
                w = edges[v][pi]
                if index[w] == -1:
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out

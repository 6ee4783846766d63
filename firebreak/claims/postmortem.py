"""The post-incident report, without I/O: from the outage ledger's entries (the agents' own words,
as the coordinator wrote them: control/incidents.py, control/outages.py), the drill reports whose
faults overlap an incident, and the credit batches' totals, to one Markdown document per incident
or time range: what failed, what the control plane decided and when, what each service saw, and
what was paid.

The ledger is read as the claims read it (ledger.read_entries): drill entries are rehearsals, not
outages, and an entry open longer than max_open_hours is not believed; both are said in the
report rather than dropped silently. A drill's own entries and reports are shown beside the
incident they overlap (a drill on the lab is also seen by the agents, which record it as an
outage: the report says which is which), or on their own when the ledger recorded nothing then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from firebreak.claims.ledger import ANY_SERVICE, Incident, Outage, incidents, is_drill, merged, read_entries
from firebreak.claims.status_page import KST, causes
from firebreak.errors import InputError, Problem

# What the agent writes into a site incident's "failover" when it released a dead leader's key
# (control/agent.py): the one decision in the ledger that carries its own time.
RELEASED = re.compile(r"released leader key of (?P<scope>\S+?)/(?P<member>\S+) at (?P<at>\d+(?:\.\d+)?)")


# -- drill reports, parsed at the edge ------------------------------------------------------------

@dataclass(frozen=True)
class DrillFault:
    fault: str
    site: str
    start: float
    end: float
    write_rto_s: float | None = None


@dataclass(frozen=True)
class DrillEvent:
    at: float
    kind: str      # fault | heal | check
    site: str
    detail: str


@dataclass(frozen=True)
class Acks:
    """Which server acknowledged writes, from when to when (wall clock): the primaries a drill saw."""
    primary: str
    timeline: int | None
    first: float
    last: float
    acks: int


@dataclass(frozen=True)
class DrillReport:
    """What postmortems use of a drill's report.json (drill/harness.finish_report)."""
    name: str                      # where it was read from, for the reader to find it again
    scenario: str
    verdict: str
    started: float
    duration_s: float
    faults: tuple[DrillFault, ...]
    events: tuple[DrillEvent, ...] = ()
    primaries: tuple[Acks, ...] = ()
    objectives: tuple[tuple[str, bool, str], ...] = ()   # (objective, met, reason)
    failures: tuple[str, ...] = ()
    acked_writes: int | None = None
    acked_lost: int | None = None
    duplicates: int | None = None
    split_brain: bool | None = None
    write_rto_s: float | None = None
    max_write_gap_s: float | None = None
    silenced: tuple[tuple[str, str], ...] = ()            # (site, how its power cut was made silent)
    services: tuple[tuple[str, str, str], ...] = ()       # (service, observed, why): a topology lab's drill
    clusters: tuple[tuple[str, float | None, int | None, int | None], ...] = ()  # (cluster, unavailable s, acked, lost)

    @property
    def start(self) -> float:
        return min((f.start for f in self.faults), default=self.started)

    @property
    def end(self) -> float:
        return max((f.end for f in self.faults), default=self.started + self.duration_s)

    @classmethod
    def from_doc(cls, name: str, doc: Any) -> "DrillReport":
        """A report.json's document; InputError naming the file and the field when a part the
        postmortem needs is missing or not of its type."""
        def need(d: Any, key: str, kind: type | tuple, where: str) -> Any:
            if not isinstance(d, dict) or key not in d:
                raise InputError(Problem(name, where + key, "missing; is this a `firebreak drill` report.json?"))
            v = d[key]
            if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
                raise InputError(Problem(name, where + key, f"expected {_kind_name(kind)}, got {v!r}"))
            return v

        def opt(d: dict, key: str, kind: type | tuple, where: str = "") -> Any:
            return need(d, key, kind, where) if isinstance(d, dict) and d.get(key) is not None else None

        if not isinstance(doc, dict):
            raise InputError(Problem(name, "", "expected a JSON object (a `firebreak drill` report.json)"))
        started = float(need(doc, "started", (int, float), ""))
        scenario = need(need(doc, "scenario", dict, ""), "name", str, "scenario.")
        faults = []
        for i, f in enumerate(need(doc, "faults", list, "")):
            where = f"faults[{i}]."
            begin = opt(f, "start_wall", (int, float), where)
            finish = opt(f, "end_wall", (int, float), where)
            # Reports written before faults carried wall-clock times: the drill's start plus offsets.
            begin = started + float(need(f, "at_s", (int, float), where)) if begin is None else float(begin)
            finish = started + float(need(f, "healed_at_s", (int, float), where)) if finish is None else float(finish)
            rto = opt(f, "write_rto_s", (int, float), where)
            faults.append(DrillFault(need(f, "fault", str, where), need(f, "site", str, where), begin, finish,
                                     None if rto is None else float(rto)))
        events = []
        for i, e in enumerate(doc.get("events") or []):
            where = f"events[{i}]."
            events.append(DrillEvent(float(need(e, "wall", (int, float), where)), need(e, "kind", str, where),
                                     str(e.get("site") or ""), str(e.get("detail") or "")
                                     + ("; " + "; ".join(map(str, e["problems"])) if e.get("problems") else "")))
        acks = []
        for i, p in enumerate(doc.get("primaries") or []):
            where = f"primaries[{i}]."
            acks.append(Acks(need(p, "primary", str, where), opt(p, "timeline", int, where),
                             started + float(need(p, "first_ack_s", (int, float), where)),
                             started + float(need(p, "last_ack_s", (int, float), where)),
                             int(opt(p, "acks", int, where) or 0)))
        objectives = tuple((str(o.get("objective", "")), bool(o.get("met")), str(o.get("reason", "")))
                           for o in doc.get("objectives") or [] if isinstance(o, dict))
        details = doc.get("service_details") or {}
        services = tuple((s, str(v.get("observed", "")), str((details.get(s) or {}).get("why", "")))
                         for s, v in (doc.get("services") or {}).items() if isinstance(v, dict))
        clusters = tuple((c, _num(v.get("write_unavailability_s")), _int(v.get("acked_writes")),
                          _int(v.get("acked_lost"))) for c, v in (doc.get("clusters") or {}).items()
                         if isinstance(v, dict))
        return cls(name=name, scenario=scenario, verdict=str(doc.get("verdict", "unknown")), started=started,
                   duration_s=float(opt(doc, "duration_s", (int, float)) or 0.0), faults=tuple(faults),
                   events=tuple(events), primaries=tuple(acks), objectives=objectives,
                   failures=tuple(map(str, doc.get("failures") or ())), acked_writes=_int(doc.get("acked_writes")),
                   acked_lost=_int(doc.get("acked_lost")), duplicates=_int(doc.get("duplicates")),
                   split_brain=doc.get("split_brain") if isinstance(doc.get("split_brain"), bool) else None,
                   write_rto_s=_num(doc.get("write_rto_s")), max_write_gap_s=_num(doc.get("max_write_gap_s")),
                   silenced=tuple(sorted((str(k), str(v)) for k, v in (doc.get("power_cut_mode") or {}).items())),
                   services=services, clusters=clusters)


def _kind_name(kind: type | tuple) -> str:
    names = {int: "a whole number", float: "a number", str: "text", list: "a list", dict: "an object",
             bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys("a number" if k in (int, float) and len(kinds) > 1 else names.get(k, k.__name__)
                                     for k in kinds))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


# -- what a report holds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """A row of "what failed": a site or a service, from when to when, and why as recorded."""
    subject: str
    kind: str
    start: float
    end: float | None          # None: still going on when the report was made
    cause: str
    recorded_by: str


@dataclass(frozen=True)
class Step:
    """A row of the timeline: what the control plane (or a drill) did or saw, and when."""
    at: float
    what: str
    detail: str = ""
    source: str = "ledger"     # ledger | drill <scenario>
    rank: int = 1              # at the same instant: a site's loss first, the incident's end last


@dataclass(frozen=True)
class Seen:
    """What one service saw: its outage windows as the ledger recorded them."""
    service: str
    windows: tuple[tuple[float, float, bool], ...]   # (start, end, still open)
    causes: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return sum(e - s for s, e, _ in self.windows)


@dataclass(frozen=True)
class Section:
    """One incident (or a drill the ledger recorded nothing for: incident None)."""
    title: str
    incident: Incident | None
    causes: tuple[str, ...]
    failed: tuple[Failure, ...]
    timeline: tuple[Step, ...]
    seen: tuple[Seen, ...]
    drills: tuple[DrillReport, ...]
    credited: tuple[int, int] | None

    @property
    def start(self) -> float:
        return self.incident.start if self.incident else min(d.start for d in self.drills)

    @property
    def end(self) -> float | None:
        if self.incident is None:
            return max(d.end for d in self.drills)
        return None if self.incident.open else self.incident.end


@dataclass(frozen=True)
class Postmortem:
    now: float
    source: str
    sections: tuple[Section, ...]
    notes: tuple[str, ...]
    currency: str = "won"
    credits_given: bool = False   # credit batches were read (else nothing is known of payments)


# -- building it ----------------------------------------------------------------------------------

def postmortem(entries: Iterable[tuple[str, Any]], now: float, max_open_hours: float, *, source: str = "",
               drills: Sequence[DrillReport] = (), credits: Mapping[int, tuple[int, int]] | None = None,
               incident: int | None = None, since: float | None = None, until: float | None = None,
               currency: str = "won") -> Postmortem:
    """The report: `entries` the ledger's (key, value) pairs, `credits` accounts and total per
    incident id (credit batches), `incident` one incident's id (its start in whole epoch seconds,
    as on the status page) or `since`/`until` a time range (incidents and drills overlapping it).
    An incident id the ledger does not hold is an InputError listing the ones it does."""
    entries = list(entries)
    read = read_entries(entries, now, max_open_hours)
    raw = {k: v for k, v in entries if isinstance(v, dict)}
    drill_entries = [(k, v) for k, v in raw.items() if is_drill(k, v)]
    found = sorted(incidents(o for o in read.outages if o.start <= now), key=lambda i: i.start)
    if incident is not None:
        chosen = [i for i in found if i.id == incident]
        if not chosen:
            known = ", ".join(str(i.id) for i in found[-10:]) or "none"
            raise InputError(Problem("--incident", "", f"no incident {incident} in the ledger ({source or 'as read'}); "
                                                       f"the latest there: {known} (omit --incident for all)"))
        lo, hi = chosen[0].start, chosen[0].end
    else:
        lo = float("-inf") if since is None else since
        hi = float("inf") if until is None else until
        chosen = [i for i in found if i.start <= hi and i.end >= lo]
    sections, used = [], set()
    for inc in chosen:
        mine = [d for d in drills if d.start <= inc.end and d.end >= inc.start]
        used.update(id(d) for d in mine)
        sections.append(_section(inc, raw, drill_entries, mine, (credits or {}).get(inc.id)))
    if incident is None:
        for d in drills:
            if id(d) not in used and d.start <= hi and d.end >= lo:
                sections.append(_drill_section(d, drill_entries))
    sections.sort(key=lambda s: s.start)
    notes = list(read.notes())
    shown = {id(d) for s in sections for d in s.drills}
    left_out = [d.name for d in drills if id(d) not in shown]
    if left_out:
        notes.append(f"{len(left_out)} drill report(s) outside what was asked, left out: {', '.join(left_out[:5])}"
                     + (", …" if len(left_out) > 5 else ""))
    return Postmortem(now, source, tuple(sections), tuple(notes), currency, credits is not None)


def _cause(o: Outage, e: Mapping[str, Any]) -> str:
    if e.get("kind") == "site-down":
        return str(e.get("detail") or "")
    return str(e.get("cause") or (f"site {o.site}" if o.site else ""))


def _section(inc: Incident, raw: Mapping[str, dict], drill_entries: list[tuple[str, dict]],
             drills: list[DrillReport], credited: tuple[int, int] | None) -> Section:
    failed, steps = [], []
    for o in inc.outages:
        e = raw.get(o.id, {})
        kind = str(e.get("kind") or "outage")
        by = str(e.get("recorded_by") or o.source or "")
        if kind == "site-down":
            site = str(e.get("site") or o.site or "")
            failed.append(Failure(f"site {site}", "site lost", o.start, None if o.open else o.end, _cause(o, e), by))
            steps.append(Step(o.start, f"site {site} lost (agreed by the surviving sites' detectors; the "
                                       "coordinator dates it from when the site fell silent)", _cause(o, e), rank=0))
            untimed = []
            for part in filter(None, (p.strip() for p in str(e.get("failover") or "").split(";"))):
                m = RELEASED.fullmatch(part)
                if m:
                    steps.append(Step(float(m["at"]), f"failover of {m['scope']}: released the leader key of "
                                                      f"{m['member']}, so a synchronous standby promotes"))
                else:
                    untimed.append(part)
            if untimed:
                steps.append(Step(o.start, f"failover during site {site}'s loss (time not recorded)",
                                  "; ".join(untimed)))
            if not o.open:
                steps.append(Step(o.end, f"site {site} back: no surviving site sees it unreachable"))
        else:
            subject = "every service" if o.service == ANY_SERVICE else o.service
            failed.append(Failure(subject, kind, o.start, None if o.open else o.end, _cause(o, e), by))
            steps.append(Step(o.start, f"{subject} out", _cause(o, e)))
            if not o.open:
                steps.append(Step(o.end, f"{subject} back"))
    failed.sort(key=lambda f: (f.start, f.kind != "site lost"))  # a site's loss first: the rest follow from it
    failed += _drill_failures(drills, drill_entries, inc.start, inc.end)
    steps += [s for d in drills for s in _drill_steps(d)]
    steps += _ledger_drill_steps(drills, drill_entries, inc.start, inc.end)
    if not inc.open:
        steps.append(Step(inc.end, "incident resolved: every outage in it closed", rank=2))
    # The site's loss first: the services' causes follow from it.
    recorded = tuple(sorted(causes(inc, raw), key=lambda c: not c.startswith("site "))) + tuple(
        f"drill {d.scenario}: " + ", ".join(f"{f.fault} of site {f.site} (injected)" for f in d.faults) for d in drills)
    seen = _seen(inc, raw)
    what = ", ".join(v.service for v in seen) or ", ".join(sorted({o.site or "?" for o in inc.outages}))
    return Section(f"Incident {inc.id}: {what}", inc, recorded, tuple(failed), _ordered(steps), seen, tuple(drills),
                   credited)


def _seen(inc: Incident, raw: Mapping[str, dict]) -> tuple[Seen, ...]:
    """Each service's windows out. A site's loss is not a service's outage where the agents
    record each service's own (an estate names the site as its "service": skipped); where they
    do not, its entry names no service and stands for every one, as claims read it."""
    kept = [o for o in inc.outages if raw.get(o.id, {}).get("kind") != "site-down" or o.service == ANY_SERVICE]
    out = []
    for s in sorted({o.service for o in kept}, key=lambda s: (s != ANY_SERVICE, s)):
        mine = [o for o in kept if o.service in (s, ANY_SERVICE)]
        windows = tuple((a, b, any(o.open and a <= o.start and o.end == b for o in mine)) for a, b in merged(mine, s))
        out.append(Seen("every service" if s == ANY_SERVICE else s, windows,
                        tuple(dict.fromkeys(c for o in mine if (c := _cause(o, raw.get(o.id, {})))))))
    return tuple(out)


def _drill_section(d: DrillReport, drill_entries: list[tuple[str, dict]]) -> Section:
    return Section(f"Drill {d.scenario} (the ledger records no outage during it)", None,
                   tuple(f"{f.fault} of site {f.site}, injected by the drill" for f in d.faults),
                   tuple(_drill_failures([d], drill_entries, d.start, d.end)),
                   _ordered(_drill_steps(d) + _ledger_drill_steps([d], drill_entries, d.start, d.end)), (), (d,), None)


def _drill_failures(drills: list[DrillReport], drill_entries: list[tuple[str, dict]], lo: float,
                    hi: float) -> list[Failure]:
    out = [Failure(f"site {f.site}", f"drill: {f.fault}", f.start, f.end, f"injected by drill {d.scenario}",
                   d.name) for d in drills for f in d.faults]
    for key, e in drill_entries:  # the drill's own ledger entries, unless its report says the same
        try:
            start, end = float(e["start"]), (float(e["end"]) if e.get("end") is not None else None)
        except (KeyError, TypeError, ValueError):
            continue
        subject = f"site {e.get('site') or '?'}"
        reported = any(f.subject == subject and abs(f.start - start) < 1.0 for f in out if f.kind.startswith("drill"))
        if start <= hi and (end is None or end >= lo) and not reported:
            out.append(Failure(subject, f"drill: {e.get('kind') or 'fault'}", start, end,
                               f"injected by drill {e.get('scenario') or '?'} (verdict {e.get('verdict') or '?'}; "
                               "a rehearsal, not an outage)", key))
    return out


def _ledger_drill_steps(drills: list[DrillReport], drill_entries: list[tuple[str, dict]], lo: float,
                        hi: float) -> list[Step]:
    if drills:
        return []  # the reports say more, and at the same times
    out = []
    for f in _drill_failures([], drill_entries, lo, hi):
        out.append(Step(f.start, f"drill fault injected: {f.kind.removeprefix('drill: ')} of {f.subject}", f.cause,
                        "ledger (drill entry)"))
        if f.end is not None:
            out.append(Step(f.end, f"drill fault healed: {f.subject}", "", "ledger (drill entry)"))
    return out


def _drill_steps(d: DrillReport) -> list[Step]:
    src = f"drill {d.scenario}"
    words = {"fault": "fault injected", "heal": "fault healed", "check": "check after heal"}
    out = [Step(e.at, words.get(e.kind, e.kind) + (f" at site {e.site}" if e.site else ""), e.detail, src)
           for e in d.events]
    if not d.events:  # older reports: the faults' own times
        for f in d.faults:
            out += [Step(f.start, f"fault injected at site {f.site}", f.fault, src),
                    Step(f.end, f"fault healed at site {f.site}", f.fault, src)]
    for f in d.faults:
        if f.write_rto_s is not None:
            out.append(Step(f.start + f.write_rto_s, "writes acknowledged again",
                            f"{f.write_rto_s:.2f} s after the {f.fault} of site {f.site}", src))
    for p in d.primaries:
        timeline = f" (timeline {p.timeline})" if p.timeline is not None else ""
        out.append(Step(p.first, f"primary {p.primary}{timeline} acknowledges writes",
                        f"{p.acks:,} acknowledged until {_clock(p.last)}", src))
    out.append(Step(d.started + d.duration_s, f"drill verdict: {d.verdict}", "; ".join(d.failures), src))
    return out


def _ordered(steps: list[Step]) -> tuple[Step, ...]:
    return tuple(sorted(steps, key=lambda s: (s.at, s.rank, s.source != "ledger")))


# -- rendering -------------------------------------------------------------------------------------

def when(t: float) -> str:
    """Korea's time, to the millisecond: the control plane acts within a second or two."""
    return datetime.fromtimestamp(t, KST).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, KST).strftime("%H:%M:%S.%f")[:-3]


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes = int(round(seconds / 60)) if seconds >= 3600 else int(seconds // 60)
    if seconds < 3600:
        return f"{minutes} min {int(seconds - minutes * 60)} s"
    return f"{minutes // 60} h {minutes % 60} min"


def offset(seconds: float) -> str:
    return ("-" if seconds <= -0.005 else "+") + duration(abs(seconds))


def cell(text: object) -> str:
    """The agents' words are data: a '|' must not end a table cell, a newline must not end the
    row, and a '<' must not become HTML where the Markdown is rendered."""
    return (str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\r", " ")
            .replace("\n", " ").strip())


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


def markdown(pm: Postmortem) -> str:
    lines = [_title(pm), "",
             f"Generated {when(pm.now)} KST from {pm.source or 'the outage ledger'}. Times are Korea Standard "
             "Time (UTC+9), to the millisecond; offsets are from the incident's start.", ""]
    if not pm.sections:
        lines += ["No incident in the ledger matches what was asked.", ""]
    for s in pm.sections:
        lines += _section_md(s, pm)
    if pm.notes:
        lines += ["## Notes on the ledger", ""] + [f"- {cell(n)}" for n in pm.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _title(pm: Postmortem) -> str:
    if len(pm.sections) == 1:
        s = pm.sections[0]
        return f"# Post-incident report: {cell(s.title)}, {when(s.start)[:16]} KST"
    if not pm.sections:
        return "# Post-incident report"
    n = sum(1 for s in pm.sections if s.incident is not None)
    drills = len(pm.sections) - n
    what = " and ".join(_plural(k, word) for k, word in ((n, "incident"), (drills, "drill")) if k)
    return f"# Post-incident report: {what}, {when(pm.sections[0].start)[:10]} to {when(pm.sections[-1].start)[:10]}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _section_md(s: Section, pm: Postmortem) -> list[str]:
    end = s.end
    lines = [f"## {cell(s.title)}", ""]
    lines += _table(["", ""], [
        ("Start", when(s.start)),
        ("End", "ongoing when this report was made" if end is None else when(end)),
        ("Duration", "ongoing" if end is None else duration(end - s.start)),
        ("Sites", ", ".join(sorted({o.site for o in s.incident.outages if o.site})) if s.incident else
         ", ".join(sorted({f.site for d in s.drills for f in d.faults}))),
        ("Root cause (as recorded)", "; ".join(s.causes) or "not recorded in the ledger"),
        ("Accounts credited", _credited(s, pm)),
    ]) + [""]
    if s.incident is None:
        lines += ["A drill is a rehearsal: nothing here is an outage, and nobody is compensated for it.", ""]
    lines += ["### What failed", ""]
    lines += _table(["What", "Kind", "Start", "End", "Duration", "Cause, as recorded", "Recorded by"],
                    [(f.subject, f.kind, when(f.start), "ongoing" if f.end is None else when(f.end),
                      "ongoing" if f.end is None else duration(f.end - f.start), f.cause or "not recorded",
                      f.recorded_by) for f in s.failed]) + [""]
    lines += ["### What the control plane decided, and when", ""]
    lines += _table(["Time", "Offset", "What", "Detail", "Source"],
                    [(when(t.at), offset(t.at - s.start), t.what, t.detail, t.source) for t in s.timeline]) + [""]
    lines += ["### What each service saw", ""]
    if s.seen:
        lines += _table(["Service", "Out from", "Until", "Out for", "Cause"],
                        [(v.service, when(a), "ongoing" if still else when(b),
                          duration(b - a) + (" so far" if still else ""), "; ".join(v.causes) or "not recorded")
                         for v in s.seen for a, b, still in v.windows]) + [""]
    else:
        lines += ["The ledger records no service outage here.", ""]
    for d in s.drills:
        lines += _drill_md(d)
    return lines


def _credited(s: Section, pm: Postmortem) -> str:
    if s.incident is None:
        return "none: a drill is not compensated"
    if not pm.credits_given:
        return "not known: no credit batches were given"
    if s.credited is None:
        return "none in the credit batches"
    return f"{s.credited[0]:,}, {s.credited[1]:,} {pm.currency} in total"


def _drill_md(d: DrillReport) -> list[str]:
    lines = [f"### Drill {cell(d.scenario)}: {cell(d.verdict)}", "",
             f"From `{cell(d.name)}`, started {when(d.started)}, {duration(d.duration_s)}."]
    facts = []
    if d.write_rto_s is not None:
        facts.append(f"writes unavailable {d.write_rto_s:.2f} s")
    if d.max_write_gap_s is not None:
        facts.append(f"longest write gap {d.max_write_gap_s:.2f} s")
    if d.acked_writes is not None:
        facts.append(f"{d.acked_writes:,} writes acknowledged")
    if d.acked_lost is not None:
        facts.append(f"{d.acked_lost:,} acknowledged writes lost")
    if d.duplicates is not None:
        facts.append(f"{d.duplicates:,} duplicated")
    if d.split_brain is not None:
        facts.append("two primaries at once" if d.split_brain else "never two primaries")
    facts += [f"power cut of {site}: {how}" for site, how in d.silenced]
    if facts:
        lines.append("Measured: " + cell("; ".join(facts)) + ".")
    lines.append("")
    if d.services:
        lines += _table(["Service", "Observed during the drill", "Why"], d.services) + [""]
    if d.clusters:
        lines += _table(["Cluster", "Writes unavailable", "Acknowledged", "Lost"],
                        [(c, "" if u is None else f"{u:.2f} s", "" if a is None else f"{a:,}", "" if lost is None
                          else f"{lost:,}") for c, u, a, lost in d.clusters]) + [""]
    if d.objectives:
        lines += _table(["Objective", "Met", "Reason"], [(o, "yes" if met else "**no**", r)
                                                         for o, met, r in d.objectives]) + [""]
    if d.failures:
        lines += ["Failures:", ""] + [f"- {cell(f)}" for f in d.failures] + [""]
    return lines

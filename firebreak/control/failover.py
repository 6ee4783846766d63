"""The failover decision: (cluster state from etcd, verdicts, freeze flag) -> actions. Pure.

How it stays safe (the long form is docs/FAILOVER.md):
* it acts only when the primary's site is dead by agreement of a majority of sites;
* it never promotes anything itself. It removes the dead leader's key with a compare-and-delete
  on the key's revision, and Patroni's own leader race does the rest, in which, in
  synchronous mode, only the synchronous standby named in /sync may win;
* it refuses when /sync names no standby, or names one that is not alive and streaming on a
  living site, because then the only copy of an acknowledged write may be in the dead site;
* the dead leader's member key is rewritten to point its REST API at a port that refuses at
  once, so the standby's leader race does not wait 2 s on a silent, dead address;
* in the same transaction as the delete, Patroni's /history gains a line for the released
  primary's timeline (fenced_history): a primary that was only out of reach for a moment (a
  flapping link) then finds itself behind the cluster's timeline and demotes, instead of taking
  the key back before a standby can (measured: it did, in the next "up" half of a flap). Should no
  standby take the key within FENCE_HOLD, the line is taken back out (stale_fence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

from firebreak.control.detector import Verdict
from firebreak.control.values import json_object
from firebreak.errors import BadValue

UNREACHABLE_API = "http://127.0.0.1:1/patroni"  # refuses immediately in every network namespace
# The reason of the /history line a release adds, followed by when (seconds since the epoch).
FENCE_MARK = "firebreak: leader key released at "
# How long a released cluster may stay without a leader before the fence is taken back out: by
# then a standby that could take the key would have (it takes well under a second), and the old
# primary, if alive, is better than no primary at all.
FENCE_HOLD = 10.0


@dataclass(frozen=True)
class Member:
    name: str
    role: str          # Patroni's role in its member key: primary | replica | ...
    state: str         # running | streaming | starting | stopped ...
    api_url: str
    revision: int      # the member key's mod_revision
    lease: int
    raw: str           # the member key's JSON, to rewrite only its api_url
    conn_url: str = ""  # postgres://host:port/db: where its PostgreSQL is probed
    replication_state: str = ""  # Patroni 4: "streaming" while its WAL receiver streams

    @property
    def streaming(self) -> bool:
        """Streaming from its primary now (Patroni 4 says so in replication_state beside state
        "running"; older versions said state "streaming")."""
        return self.state == "streaming" or (self.state == "running" and self.replication_state == "streaming")

    @classmethod
    def from_value(cls, name: str, raw: str, revision: int, lease: int) -> "Member":
        """A Patroni member key, or BadValue naming the field. Patroni writes a JSON object whose
        role, state and api_url are strings; anything else was not written by Patroni, and a
        member the agent cannot read is treated as absent (never a failover candidate)."""
        d = json_object(raw, f"member {name}")
        fields = {}
        for f in ("role", "state", "api_url", "conn_url", "replication_state"):
            v = d.get(f, "")
            if not isinstance(v, str):
                raise BadValue(f"member {name}: {f} must be text, got {v!r}")
            fields[f] = v
        return cls(name, fields["role"], fields["state"], fields["api_url"], revision, lease, raw, fields["conn_url"],
                   fields["replication_state"])


@dataclass(frozen=True)
class Sync:
    """Patroni's /sync key: the leader it was written for and its synchronous standbys (in quorum
    commit, its voters), and `quorum`: how many other voters a candidate must hear from in its
    leader race to be sure to see the latest acknowledged commit (0 outside quorum commit)."""
    leader: str | None
    standbys: tuple[str, ...]
    quorum: int = 0

    @classmethod
    def from_value(cls, raw: str) -> "Sync":
        """As Patroni's SyncState.from_node reads it (sync_standby: names joined by commas, or
        null; quorum counted only with a leader), but a value of the wrong shape is BadValue
        rather than "no standby": the caller then promotes nothing, as it would with no /sync."""
        d = json_object(raw, "/sync")
        leader, standbys, quorum = d.get("leader"), d.get("sync_standby"), d.get("quorum")
        if leader is not None and not isinstance(leader, str):
            raise BadValue(f"/sync: leader must be a member name, got {leader!r}")
        if standbys is not None and not isinstance(standbys, str):
            raise BadValue(f"/sync: sync_standby must be member names joined by commas, got {standbys!r}")
        if quorum is not None and (isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 0):
            raise BadValue(f"/sync: quorum must be a whole number of voters, got {quorum!r}")
        return cls(leader or None, tuple(x.strip() for x in (standbys or "").split(",") if x.strip()),
                   quorum if leader and quorum else 0)


@dataclass(frozen=True)
class Ignored:
    """A key whose value did not parse: left out of the state, logged once and counted by the reader."""
    key: str
    revision: int
    reason: str


@dataclass(frozen=True)
class ClusterState:
    leader: str | None            # member name in the leader key
    leader_revision: int
    sync_leader: str | None       # /sync: the leader it was written for
    sync_standbys: tuple[str, ...]
    members: Mapping[str, Member]
    name: str = ""                # the cluster's scope (one agent protects many clusters)
    ttl: int | None = None        # Patroni's dynamic configuration's ttl (its /config key), if read
    ignored: tuple[Ignored, ...] = ()  # keys of this cluster whose values did not parse
    leader_lease: int = 0         # the leader key's lease; Patroni always writes it with one
    quorum_commit: bool = False   # /config's synchronous_mode is "quorum" (PostgreSQL's ANY k (...))
    sync_quorum: int = 0          # /sync's quorum: other voters a candidate must hear from
    history: str | None = None    # Patroni's /history value (JSON lines), if the key exists
    history_revision: int = 0     # its mod_revision (0: no such key)
    check_timeline: bool | None = None  # /config's check_timeline (None: /config unread)
    paused: bool = False          # /config's pause: Patroni's maintenance mode

    @property
    def quorum_active(self) -> bool:
        """Patroni's quorum_commit_mode_is_active: quorum commit asked for and /sync written."""
        return self.quorum_commit and self.sync_leader is not None

    def bogus_leader(self) -> str | None:
        """Why the leader key cannot be Patroni's own, or None. Patroni writes it under its
        session's lease, naming a member whose key it wrote first; a key naming no member, or
        holding no lease, was written by something else (measured: one put of a name that is no
        member left every member "following a leader (x-test)", with no primary, indefinitely)."""
        if self.leader is None:
            return None
        if self.leader_lease == 0:
            return f"leader key names {self.leader!r} but holds no lease"
        if self.leader not in self.members and not any(i.key.endswith("/members/" + self.leader) for i in self.ignored):
            return f"leader key names {self.leader!r}, which is no member"
        return None


@dataclass(frozen=True)
class FenceApi:
    member: str
    revision: int
    lease: int
    value: str


@dataclass(frozen=True)
class DeleteLeader:
    """Compare-and-delete the leader key at `revision`; then, when `lease` is given, revoke the
    dead leader's session lease (Patroni's: its leader and member keys hang on it). Patroni takes
    a leader key that names it, read on its lease, as held without writing anything
    (etcd3.py _update_leader), and reads its own site's etcd member serializably: a primary's
    Patroni back from an isolation shorter than its ttl, whose lease had lived on, read its
    member's stale copy of the deleted key, promoted itself on the same timeline number as the
    new primary (2026-12-05, bench/replication.py) and could never follow it again. A revoked
    lease makes it grant a new one, and the key must then be won in a transaction, which
    reads the truth.

    `history`, when given, is written to Patroni's /history in the same transaction as the
    delete (fenced_history says why), compared on `history_revision`, and the lease is then
    revoked only once another member holds the key: with its lease revoked, an old primary whose
    read of etcd predates the delete would win the key back in update_lock's create-if-absent
    transaction, which never asks whether it is behind (etcd3.py _update_leader)."""
    member: str
    revision: int
    lease: int = 0  # 0: revoke nothing (a key that is not a session's: bogus_leader)
    history: str | None = None
    history_revision: int = 0  # the history's mod_revision it was read at (0: no such key)


@dataclass(frozen=True)
class RestoreHistory:
    """Put /history back as it was before a release's fence (stale_fence), compared on the
    revision the fence was read at."""
    value: str
    revision: int


@dataclass(frozen=True)
class DropMember:
    """Delete a dead member's key so that Patroni stops waiting for it (see decide())."""
    member: str
    revision: int


# What the decision may ask the agent to do: a closed set, matched exhaustively by the agent.
Action = FenceApi | DeleteLeader | DropMember | RestoreHistory


def _history_lines(raw: str | None) -> list[list] | None:
    """/history's lines as Patroni reads them (TimelineHistory.from_node: a JSON list), each a
    list whose first item is a timeline number; None when the value is anything else."""
    try:
        lines = json.loads(raw) if raw is not None else []
        if not isinstance(lines, list) or not all(isinstance(x, list) and x for x in lines):
            return None
        for x in lines:
            int(x[0])
        return lines
    except (ValueError, TypeError):
        return None


def _member_int(raw: str, name: str) -> int:
    """A whole number a Patroni member key reports (its timeline, its xlog_location); 0 when it
    reports none, or not a number."""
    try:
        v = json.loads(raw).get(name)
    except (ValueError, AttributeError):
        return 0
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def fenced_history(history: str | None, member_raw: str, now: float) -> str | None:
    """Patroni's /history with one more line, for the timeline of the primary whose key is being
    released, so that the cluster's timeline (its last line + 1, Cluster.timeline) is past it.
    Patroni lets a running primary without the key take it only when its own timeline is not
    behind the cluster's (ha.py is_healthiest_node: its guard against a primary that comes back
    after another promoted and "happily" takes the lock): the released primary, if it is alive
    after all, demotes and follows instead. Standbys race as before (Patroni checks their
    timelines only with check_timeline, off unless /config sets it, and then nothing is fenced:
    decide()), and the one that wins writes the true
    history at its first loop as primary (update_cluster_history: a line of three items is
    rewritten). None when there is nothing to fence: the member key names no timeline, or the
    history is already past it or does not parse (then it is left alone)."""
    timeline = _member_int(member_raw, "timeline")
    if timeline < 1:
        return None
    lines = _history_lines(history)
    if lines is None or (lines and int(lines[-1][0]) >= timeline):
        return None
    lsn = max(0, _member_int(member_raw, "xlog_location"))
    return json.dumps([*lines, [timeline, lsn, f"{FENCE_MARK}{now:.3f}"]], separators=(",", ":"))




def stale_fence(cluster: ClusterState, now: float) -> RestoreHistory | None:
    """A release's fence (fenced_history) still last in /history with no leader for FENCE_HOLD:
    no standby took the key, and the fence keeps the old primary, if alive, from taking it back.
    Then the fence comes out again, and Patroni's own rules apply."""
    if cluster.leader is not None or cluster.history is None:
        return None
    lines = _history_lines(cluster.history)
    if not lines or len(lines[-1]) < 3 or not isinstance(lines[-1][2], str) \
            or not lines[-1][2].startswith(FENCE_MARK):
        return None
    try:
        fenced_at = float(lines[-1][2][len(FENCE_MARK):])
    except ValueError:
        return None
    if now - fenced_at < FENCE_HOLD:
        return None
    # A member on a later timeline than the fenced one was promoted after the release (and may
    # have acknowledged writes before it died): the fence is all that stops the old primary.
    if any(_member_int(m.raw, "timeline") > int(lines[-1][0]) for m in cluster.members.values()):
        return None
    return RestoreHistory(json.dumps(lines[:-1], separators=(",", ":")), cluster.history_revision)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    reason: str
    failover: bool = False    # the primary's site is dead and we act
    refused: bool = False     # it is dead but acting is unsafe


def decide(cluster: ClusterState, verdicts: Mapping[str, Verdict], site_of: Mapping[str, str],
           frozen: bool = False, stalled: Mapping[str, Verdict] | None = None,
           cut: "set[frozenset[str]] | None" = None, bogus_agreed: bool = False,
           flapping: "set[frozenset[str]] | None" = None, now: float | None = None,
           lapsing: "set[frozenset[str]] | None" = None,
           lasting: "set[frozenset[str]] | None" = None) -> Decision:
    """`stalled`: member -> verdict on whether its PostgreSQL answers (detector.stall_verdicts):
    a primary whose site is alive but whose PostgreSQL accepts connections and answers nothing
    (a storage hang, a paused postmaster) cannot commit, and is failed over like a dead site's.
    `cut`: links between living sites that are cut (detector.cut_links); `flapping`: links that
    keep failing for less than the window (detector.flap_step); `lapsing`: links failing now, for
    half the window or more (detector.lapse_reading, as flap_step keeps them); `lasting`: links
    failing without a break for detector.LASTING (a cut, whatever flapped before). `bogus_agreed`: a
    majority of sites have read the same leader key revision as bogus (ClusterState.bogus_leader).
    `now`: the time, for a release's fence (fenced_history, stale_fence); None, no fence."""
    leader = cluster.leader
    if leader is None:
        if now is not None and (restore := stale_fence(cluster, now)) is not None:
            return Decision((restore,), f"no leader key {FENCE_HOLD:g} s after a release: taking the release's "
                                        "line back out of /history, so the old primary may take the key again",
                            failover=True)
        return Decision((), "no leader key: Patroni is electing a leader by itself")
    if (why := cluster.bogus_leader()) is not None:
        if not bogus_agreed:
            return Decision((), f"{why}; waiting for a majority of sites to read it so")
        if frozen:
            return Decision((), f"{why}, but automation is frozen: nothing will replace it", refused=True)
        # Compare-and-delete on its revision: a key Patroni rewrote meanwhile is left alone.
        return Decision((DeleteLeader(leader, cluster.leader_revision),),
                        f"{why}: removing it so Patroni's leader race can run", failover=True)
    leader_site = site_of.get(leader, leader)
    verdict = verdicts.get(leader_site)

    def alive() -> Decision:
        return _standby_loss(cluster, verdicts, site_of, frozen) or \
            _standby_cut_off(cluster, verdicts, site_of, frozen, cut or set(), stalled or {}, flapping or set(),
                             lapsing or set(), lasting or set()) or \
            Decision((), f"primary {leader} in {leader_site} is alive")
    if verdict is None or not verdict.dead:
        stall = (stalled or {}).get(leader)
        if stall is None or not stall.dead:
            # A primary whose site flaps is ridden out, not released: moving it as soon as its
            # links read as flapping was built and measured twice, and its clients' writes waited
            # as long (TCP's backoff on the path, before any move; BENCHMARKS.md, "Gray failures").
            return alive()
        return _release(cluster, verdicts, site_of, leader, f"primary {leader}'s PostgreSQL answers nothing",
                        stall.reason, stalled, now, frozen)
    return _release(cluster, verdicts, site_of, leader, f"primary's site {leader_site} is dead", verdict.reason,
                    stalled, now, frozen)


def _release(cluster: ClusterState, verdicts: Mapping[str, Verdict], site_of: Mapping[str, str], leader: str,
             what: str, why: str, stalled: Mapping[str, Verdict] | None, now: float | None,
             frozen: bool = False) -> Decision:
    """Release the leader key of a primary that is lost (`what`, because `why`), or refuse, with
    the reason, when that could lose an acknowledged write or would come to nothing."""
    if frozen:
        return Decision((), f"{what}, but automation is frozen: Patroni alone "
                            "will fail over when its leader key expires", refused=True)
    if cluster.paused:
        # Patroni's maintenance mode: its standbys do not race for a free key, and operators have
        # taken the cluster over.
        return Decision((), f"{what}, but Patroni is paused (maintenance mode): nothing fails over until "
                            "it is resumed (`patronictl resume`)", refused=True)
    if not cluster.sync_standbys or cluster.sync_leader != leader:
        return Decision((), f"{what}, but /sync names no synchronous standby of "
                            f"{leader}: promoting any replica could lose acknowledged writes", refused=True)
    candidates = []
    why_not = []
    for name in cluster.sync_standbys:
        site = site_of.get(name, name)
        m = cluster.members.get(name)
        if verdicts.get(site) is not None and verdicts[site].dead:
            why_not.append(f"{name}: its site {site} is dead too")
        elif m is None:
            why_not.append(f"{name}: no member key (Patroni not running)")
        elif m.state not in ("streaming", "running"):
            why_not.append(f"{name}: state {m.state}")
        else:
            candidates.append(name)
    if cluster.quorum_active:
        # A voter whose PostgreSQL answers nothing cannot answer its Patroni either: no vote.
        for name in [n for n in candidates if n in (stalled or {}) and stalled[n].dead]:
            candidates.remove(name)
            why_not.append(f"{name}: its PostgreSQL answers nothing")
        # Patroni's quorum rule (ha.py _is_healthiest_node): a voter wins the leader race only
        # with `quorum` votes from other voters whose PostgreSQL runs and is not ahead of it (a
        # non-voter needs one more). Each acknowledged commit is on `numsync` voters and
        # quorum + numsync = voters, so any quorum + 1 living voters include one holding it.
        # Fewer, and the race cannot end: releasing the key would leave no primary at all.
        if len(candidates) < cluster.sync_quorum + 1:
            return Decision((), f"{what}, but only {len(candidates)} of voters {', '.join(cluster.sync_standbys)} "
                                f"can vote, and Patroni's quorum needs {cluster.sync_quorum + 1} to be sure a "
                                "candidate holds every acknowledged write" + (": " + "; ".join(why_not) if why_not else ""),
                            refused=True)
    elif not candidates:
        return Decision((), f"{what}, but no synchronous standby can take over: "
                            + "; ".join(why_not), refused=True)
    actions: list[Action] = []
    dead_member = cluster.members.get(leader)
    if dead_member is not None and dead_member.api_url != UNREACHABLE_API:
        actions.append(FenceApi(leader, dead_member.revision, dead_member.lease,
                                _with_api(dead_member.raw, UNREACHABLE_API)))
    # With check_timeline on, Patroni's standbys would not race past the fence either; with /config
    # unread, Patroni keeps whatever it last read, which may have it on.
    fence = fenced_history(cluster.history, dead_member.raw, now) \
        if dead_member is not None and now is not None and cluster.check_timeline is False else None
    actions.append(DeleteLeader(leader, cluster.leader_revision, cluster.leader_lease, fence,
                                cluster.history_revision))
    who = (f"the quorum of voters {', '.join(candidates)} elects the one holding the latest commit"
           if cluster.quorum_active else f"synchronous standby {', '.join(candidates)} takes over")
    return Decision(tuple(actions), f"{what} ({why}); releasing {leader}'s leader key so {who}",
                    failover=True)



def _with_api(raw: str, api_url: str) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    data["api_url"] = api_url
    return json.dumps(data, separators=(",", ":"))


def _standby_loss(cluster: ClusterState, verdicts: Mapping[str, Verdict], site_of: Mapping[str, str],
                  frozen: bool) -> Decision | None:
    """The synchronous standby's site is dead: every commit waits for an acknowledgement that
    will never come, until Patroni drops the standby when its member key expires (ttl, 20 s).
    Deleting that member key (compare on its revision) lets Patroni choose another standby at
    its next loop. No acknowledged write is at risk: a commit is acknowledged only once the new
    synchronous standby has it too."""
    dead_sync = [n for n in cluster.sync_standbys if verdicts.get(site_of.get(n, n)) is not None
                 and verdicts[site_of.get(n, n)].dead and n in cluster.members]
    if not dead_sync or cluster.sync_leader != cluster.leader:
        return None
    names = ", ".join(dead_sync)
    if frozen:
        return Decision((), f"synchronous standby {names} is in a dead site, but automation is frozen: writes "
                            "wait until Patroni drops it", refused=True)
    return Decision(tuple(DropMember(n, cluster.members[n].revision) for n in dead_sync),
                    f"synchronous standby {names} is in a dead site; dropping its member key so Patroni "
                    "picks a living standby and writes stop waiting for it", failover=True)


def _standby_cut_off(cluster: ClusterState, verdicts: Mapping[str, Verdict], site_of: Mapping[str, str],
                     frozen: bool, cut: set[frozenset[str]], stalled: Mapping[str, Verdict],
                     flapping: set[frozenset[str]], lapsing: set[frozenset[str]] = frozenset(),
                     lasting: set[frozenset[str]] = frozenset()) -> Decision | None:
    """The link between the primary's site and its synchronous standby's is cut or flaps, both sites
    alive, or the standby's PostgreSQL accepts connections and answers nothing (a storage hang: a
    chaos run measured writes stopped for the whole of an 11 s pause): every commit waits for a
    standby that cannot acknowledge it. PostgreSQL notices only after wal_sender_timeout (60 s by
    default, 5 s as deploy/components.py renders it), and Patroni keeps a standby whose member key
    is fresh, so writes stopped for the whole of a 30 s cut when measured (with 60 s). Dropping the
    standby's member key makes Patroni choose another at once; it is acted on only when another
    standby streams in a site the primary's site still reaches, so the primary never ends up
    acknowledging alone. Its acknowledged commits are on the old standby; new ones wait for the new
    standby, so nothing acknowledged rests on one site at any moment. A flapping link (down and up
    faster than the window) is as bad: the stream over it stalls for seconds at each lapse
    (measured: 9.48 s of stopped commits while the standby's site flapped every 0.75 s, until it was
    once cut long enough), and a standby across it is no candidate either.

    Nor is a standby across a link failing at this moment, and a flapping link read as cut at one
    of its lapses is no hard cut: when the primary's whole site flapped, each lapse dropped one
    standby for the other, equally cut off, and Patroni's /sync, rewritten at every drop, once named
    no standby at the moment the verdict came, so the failover itself was refused (bench/drills.py
    flap-fast, 2026-12-05)."""
    leader = cluster.leader
    if leader is None or cluster.sync_leader != leader or not (cut or stalled or flapping):
        return None
    if cluster.quorum_active:
        # A commit waits for ANY numsync of the voters: one that cannot acknowledge is simply
        # not among those that do, and dropping it would only churn /sync.
        return None
    here = site_of.get(leader, leader)

    def link(name: str) -> frozenset[str]:
        return frozenset((here, site_of.get(name, name)))

    def silent(name: str) -> bool:
        return link(name) in cut or (name in stalled and stalled[name].dead)

    def stuck(name: str) -> bool:
        return silent(name) or link(name) in flapping
    cut_off = [n for n in cluster.sync_standbys if stuck(n) and n in cluster.members]
    if not cut_off:
        return None
    hard = any((link(n) in cut and (link(n) not in flapping or link(n) in lasting))
               or (n in stalled and stalled[n].dead) for n in cut_off)

    def usable(name: str) -> bool:
        m, site = cluster.members[name], site_of.get(name, name)
        return (name != leader and name not in cut_off and m.streaming and not silent(name)
                and link(name) not in lapsing and not (site in verdicts and verdicts[site].dead))
    # One that cannot acknowledge at all is replaced even by a standby across a flapping link
    # (which acknowledges between lapses); one that only flaps, only by a steady one.
    steady = [n for n in cluster.members if usable(n) and link(n) not in flapping]
    others = steady or ([n for n in cluster.members if usable(n)] if hard else [])
    names = ", ".join(cut_off)
    what = f"synchronous standby {names} cannot acknowledge (its link to {leader}'s site is cut or keeps failing, or its PostgreSQL answers nothing)"
    if (not others or frozen) and not hard:
        # Only flapping (the primary's own site flaps, say) and nothing to do about it: the
        # stream still gets through between lapses, so nothing is refused (or alerted on).
        return None
    def passing(name: str) -> bool:
        """Its link failing now, not (yet) read cut, its site not dead: a lapse that may end."""
        site = site_of.get(name, name)
        return (link(name) in lapsing and link(name) not in cut
                and not (site in verdicts and verdicts[site].dead))
    if not others and any(passing(n) for n in cluster.members if n != leader and n not in cut_off):
        # The primary's site going silent to its standbys' sites alike: a verdict's business, or
        # a lapse that ends; nothing to refuse. (A cut or a dead site is no such lapse: with no
        # replacement, writes wait, and the refusal says so and records the outage.)
        return None
    if not others:
        return Decision((), f"{what}, but no other standby streams in a site the primary reaches: dropping it "
                            "would leave the primary acknowledging alone, so writes wait", refused=True)
    if frozen:
        return Decision((), f"{what}, but automation is frozen: writes wait", refused=True)
    return Decision(tuple(DropMember(n, cluster.members[n].revision) for n in cut_off),
                    f"{what}; dropping its member key so Patroni makes {', '.join(others)} synchronous", failover=True)

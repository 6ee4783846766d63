"""Webhooks without I/O: the events the incidents call for, what a notifier has yet to claim,
which deliveries are due again, the signature; and the operator's subscribers file."""

import hashlib
import hmac
import json
import os

import pytest

from firebreak.claims.status_page import PublicIncident
from firebreak.claims.subscribers import load_webhooks
from firebreak.claims.webhooks import Pending, Retry, check, due, events, headers, remember, sign, to_claim
from firebreak.errors import InputError

NOW = 1_700_000_000.0
H = 3600.0
URL = "https://status.example"


def inc(start, end=None, services=("messenger",)):
    return PublicIncident(int(start), start, end, tuple(services), ("pangyo",), ("site pangyo lost",), ())


# -- which events ---------------------------------------------------------------------------------

@pytest.mark.parametrize("incidents,ids", [
    ([], []),
    # going on: opened, however long ago it began
    ([inc(NOW - 60)], [f"incident-{int(NOW - 60)}-opened"]),
    ([inc(NOW - 30 * H)], [f"incident-{int(NOW - 30 * H)}-opened"]),
    # over, within the horizon: opened (late, if nobody sent it) and resolved at its end
    ([inc(NOW - 2 * H, NOW - H)], [f"incident-{int(NOW - 2 * H)}-opened", f"incident-{int(NOW - 2 * H)}-resolved-"
                                                                          f"{int(NOW - H)}"]),
    # began before the horizon, ended within it: only its end
    ([inc(NOW - 30 * H, NOW - H)], [f"incident-{int(NOW - 30 * H)}-resolved-{int(NOW - H)}"]),
    # history beyond the horizon: nothing (a new subscriber does not get 90 days of it)
    ([inc(NOW - 50 * H, NOW - 49 * H)], []),
])
def test_the_events_the_incidents_call_for(incidents, ids):
    assert [e.id for e in events(incidents, NOW, 24 * H, URL)] == ids


def test_an_end_that_moves_later_is_a_new_event():
    before = {e.id for e in events([inc(NOW - H, NOW - 600)], NOW, 24 * H, URL)}
    after = {e.id for e in events([inc(NOW - H, NOW - 300)], NOW, 24 * H, URL)}
    assert after - before == {f"incident-{int(NOW - H)}-resolved-{int(NOW - 300)}"}


def test_the_body_says_what_the_page_says_and_is_the_same_bytes_everywhere():
    opened, resolved = events([inc(NOW - H, NOW - 600, ("messenger", "taxi"))], NOW, 24 * H, URL + "/")
    doc = json.loads(resolved.body())
    assert doc == {"id": resolved.id, "type": "incident.resolved", "incident": int(NOW - H), "state": "resolved",
                   "start": "2023-11-14T21:13:20Z", "end": "2023-11-14T22:03:20Z", "services": ["messenger", "taxi"],
                   "sites": ["pangyo"], "causes": ["site pangyo lost"],
                   "url": f"https://status.example/incidents#incident-{int(NOW - H)}"}
    assert json.loads(opened.body())["state"] == "open" and json.loads(opened.body())["end"] is None
    assert resolved.body() == events([inc(NOW - H, NOW - 600, ("messenger", "taxi"))], NOW, 24 * H, URL)[1].body()


# -- previous vs current: what to claim ------------------------------------------------------------

A, B = "https://a.example/hook", "https://b.example/hook"
OPEN = inc(NOW - 60)
OVER = inc(NOW - 2 * H, NOW - H)


@pytest.mark.parametrize("known,incidents,subscribers,claim", [
    # nothing known (a notifier just started): everything the incidents call for, for everyone
    (set(), [OPEN], [A, B], [(A, "opened"), (B, "opened")]),
    # known already: nothing again
    ({(A, f"incident-{OPEN.id}-opened"), (B, f"incident-{OPEN.id}-opened")}, [OPEN], [A, B], []),
    # a subscriber added later gets what the horizon holds
    ({(A, f"incident-{OPEN.id}-opened")}, [OPEN], [A, B], [(B, "opened")]),
    # the incident ended: its end, and nothing else
    ({(A, f"incident-{OVER.id}-opened")}, [OVER], [A], [(A, f"resolved-{int(NOW - H)}")]),
])
def test_what_a_notifier_tries_to_claim(known, incidents, subscribers, claim):
    got = to_claim(frozenset(known), events(incidents, NOW, 24 * H, URL), subscribers)
    assert [(s, e.id.split("-", 2)[2]) for s, e in got] == claim


def test_what_a_notifier_remembers_never_outgrows_the_horizon():
    wanted = events([OPEN], NOW, 24 * H, URL)
    known = remember({(A, "incident-1-opened")}, wanted, [(A, wanted[0].id)])
    assert known == {(A, wanted[0].id)}  # the old event no longer called for is forgotten


# -- retries ---------------------------------------------------------------------------------------

R = Retry(lease_s=60, base_s=10, max_s=3600, give_up_s=72 * H)


def pending(claimed_ago, attempts=1, failed=False, created_ago=None):
    return Pending(A, "e", NOW - (created_ago if created_ago is not None else claimed_ago), NOW - claimed_ago,
                   attempts, failed)


@pytest.mark.parametrize("row,verdict", [
    (pending(5, failed=True), "wait"),           # failed 5 s ago; first backoff 10 s
    (pending(11, failed=True), "again"),
    (pending(30, attempts=3, failed=True), "wait"),   # third failure: 40 s
    (pending(41, attempts=3, failed=True), "again"),
    (pending(3000, attempts=20, failed=True), "wait"),  # capped at an hour
    (pending(3601, attempts=20, failed=True), "again"),
    (pending(30), "wait"),                       # under way, or its sender died: the lease first
    (pending(61), "again"),                      # the sender died: taken over
    (pending(61, created_ago=73 * H), "give up"),
    (pending(30, created_ago=73 * H), "wait"),   # may still be under way: not abandoned under its sender
])
def test_which_deliveries_are_due_again(row, verdict):
    again, give_up = due([row], NOW, R)
    assert ("again" if again else "give up" if give_up else "wait") == verdict


@pytest.mark.parametrize("attempts,seconds", [(1, 10), (2, 20), (5, 160), (9, 2560), (10, 3600), (40, 3600)])
def test_backoff(attempts, seconds):
    assert R.backoff(attempts) == seconds


# -- the signature ---------------------------------------------------------------------------------

SECRET = b"0123456789abcdef0123456789abcdef"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"id":"incident-1-opened"}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, body) == "sha256=" + expected
    h = headers(SECRET, 1_700_000_000, "incident-1-opened", body, 2)
    assert h["X-Firebreak-Signature"] == "sha256=" + expected and h["X-Firebreak-Timestamp"] == "1700000000"
    assert h["X-Firebreak-Event"] == "incident-1-opened" and h["X-Firebreak-Attempt"] == "2"


@pytest.mark.parametrize("ts,sig,body,now,why", [
    ("1700000000", None, b"{}", NOW, None),
    ("1700000000", None, b"{} ", NOW, "signature does not match"),
    ("1700000000", "sha256=00", b"{}", NOW, "signature does not match"),
    ("1700000000", None, b"{}", NOW + 301, "more than 300 s from now"),
    (None, None, b"{}", NOW, "no X-Firebreak-Timestamp"),
    ("soon", None, b"{}", NOW, "no X-Firebreak-Timestamp"),
])
def test_a_subscribers_check(ts, sig, body, now, why):
    sig = sig or sign(SECRET, 1_700_000_000, b"{}")
    got = check(SECRET, ts, sig, body, now)
    assert (got is None) if why is None else (why in got)


# -- the operator's file ---------------------------------------------------------------------------

def secret_file(path, text="s" * 32, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def write(tmp_path, body):
    (tmp_path / "hooks.yaml").write_text(body)
    return tmp_path / "hooks.yaml"


def test_a_good_file(tmp_path):
    secret_file(tmp_path / "a.secret", "  " + "x" * 40 + "\n")
    hooks = load_webhooks(write(tmp_path, f"public_url: {URL}/\nsubscribers:\n  - url: {A}\n    secret_file: a.secret\n"
                                          "lease_s: 30\ntimeout_s: 3\n"))
    assert hooks.public_url == URL and [s.url for s in hooks.subscribers] == [A]
    assert hooks.secret(A) == b"x" * 40 and hooks.secret(B) is None   # read relative to the file, stripped
    assert hooks.retry.lease_s == 30 and hooks.timeout_s == 3 and hooks.horizon_s == 24 * H
    assert "x" * 40 not in repr(hooks)


@pytest.mark.parametrize("mode,text,expected", [
    (0o644, "s" * 32, "line 4: subscribers[0].secret_file: {d}/a.secret is readable by group or others (mode 0644); "
                      "run: chmod 600 {d}/a.secret"),
    (0o640, "s" * 32, "(mode 0640)"),
    (0o600, "short", "holds 5 characters; a secret needs 16 or more"),
    (None, "", "cannot read {d}/a.secret (No such file or directory); create it with: umask 077;"),
])
def test_a_secret_file_others_can_read_or_that_is_no_secret_is_refused(tmp_path, mode, text, expected):
    if mode is not None:
        secret_file(tmp_path / "a.secret", text, mode)
    path = write(tmp_path, f"public_url: {URL}\nsubscribers:\n  - url: {A}\n    secret_file: a.secret\n")
    with pytest.raises(InputError) as e:
        load_webhooks(path)
    assert str(e.value).startswith(f"{path}: ") and expected.format(d=tmp_path) in str(e.value)


@pytest.mark.parametrize("body,expected", [
    (f"public_url: {URL}\nsubscribers:\n  - url: ftp://x/y\n    secret_file: a.secret\n",
     "subscribers[0].url: 'ftp://x/y' is not an http(s) URL with a host"),
    (f"public_url: {URL}\nsubscribers:\n  - url: https://u:p@x/y\n    secret_file: a.secret\n",
     "a URL with a user or password in it"),
    (f"public_url: {URL}\nsubscribers:\n  - {{url: {A}, secret_file: a.secret}}\n  - {{url: {A}, secret_file: a.secret}}\n",
     f"subscribers[1].url: {A} is listed twice"),
    (f"public_url: status\nsubscribers: []\n", "public_url: 'status' is not an http(s) URL"),
    (f"public_url: {URL}\nsubscribers: []\nlease_s: 10\ntimeout_s: 5\n",
     "lease_s (10) must be more than twice timeout_s (5)"),
    (f"public_url: {URL}\nsubscribers:\n  - {{url: {A}, secret: abc}}\n", "subscribers[0]"),
    (f"subscribers: []\n", "public_url"),
])
def test_a_bad_file_names_the_field(tmp_path, body, expected):
    secret_file(tmp_path / "a.secret")
    with pytest.raises(InputError) as e:
        load_webhooks(write(tmp_path, body))
    assert expected in str(e.value), str(e.value)

"""A drill declared in etcd (control/keys.py `drills/<site>`, issue 31), parsed at the edge
(control/drills.py): a bad value is refused naming the field (the shell ignores and counts it: no
drill, so the outage is recorded as real). The coordinator's use of it:
tests/unit/test_coordinator.py; the drill runner's side: tests/unit/test_drill_declaration.py."""

from __future__ import annotations

import json
import math

import pytest

from firebreak.control.drills import Drill, active, covering
from firebreak.control.keys import Keys
from firebreak.errors import BadValue


def value(**over):
    d = {"drill": "power-cut@1000.000", "since": 1000.0, "until": 1400.0, "fault": "power-cut", "runner": "lab"}
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not ...})


def test_a_declaration_parses_its_site_from_the_key_and_ignores_fields_it_does_not_know():
    assert Drill.from_value("pangyo", value(site="ansan", next_version=2), lease=7) == Drill(
        "pangyo", "power-cut@1000.000", 1000.0, 1400.0)


BAD = [
    ("not under a lease (a dead runner's would stay)", value(), 0, "not under a lease"),
    ("not json", "{", 7, "not JSON"),
    ("a list", "[]", 7, "JSON object"),
    ("no drill id", value(drill=...), 7, "drill must be"),
    ("an empty drill id", value(drill="  "), 7, "drill must be"),
    ("a drill id that is not text", value(drill=7), 7, "drill must be"),
    ("a drill id too long for a ledger entry", value(drill="x" * 201), 7, "drill must be"),
    ("since missing", value(since=...), 7, "since"),
    ("until as text", value(until="soon"), 7, "until"),
    ("until NaN", value(until=math.nan), 7, "until"),
    ("until a boolean", value(until=True), 7, "until"),
    ("negative since", value(since=-1), 7, "below 0"),
    ("until before since", value(until=999.0), 7, "is before since"),
]


@pytest.mark.parametrize("name,raw,lease,why", BAD, ids=[c[0] for c in BAD])
def test_a_bad_declaration_is_refused_naming_the_field(name, raw, lease, why):
    with pytest.raises(BadValue) as e:
        Drill.from_value("pangyo", raw, lease)
    assert why in str(e.value) and "drill over pangyo" in str(e.value)


@pytest.mark.parametrize("now,expected", [
    (900.0, {"pangyo": "a", "ansan": "b"}),   # before since: the runner's clock may be ahead of the agent's
    (1400.0, {"pangyo": "a", "ansan": "b"}),
    (1400.1, {"ansan": "b"}),                  # past its until: not believed
    (1600.1, {}),
])
def test_a_declaration_counts_until_its_planned_end(now, expected):
    declared = {"pangyo": Drill("pangyo", "a", 1000.0, 1400.0), "ansan": Drill("ansan", "b", 1000.0, 1600.0)}
    assert active(declared, now) == expected


def test_covering_names_the_drill_over_any_of_the_sites_in_their_order():
    assert covering({"ansan": "b", "siheung": "c"}, ["pangyo", "siheung", "ansan"]) == "c"
    assert covering({"ansan": "b"}, ["pangyo"]) == ""


def test_the_key_is_declared_once_beside_the_others():
    assert Keys().drill("pangyo") == "/firebreak/drills/pangyo" and Keys().drills == "/firebreak/drills/"

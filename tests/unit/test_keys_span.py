"""The coordination span (Keys.coordination_span): one range a tick reads every 0.1 s, holding the
coordinator key, `frozen`, drained/ and drills/. A key of Firebreak's named between them would be
read every tick on every site: this lists every key Keys can name and checks which fall inside."""

import inspect

from firebreak.control.keys import Keys


def every_key(keys: Keys) -> set[str]:
    names = set()
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(keys, name)
            if isinstance(value, str):
                names.add(value)
        elif inspect.isfunction(member):
            params = [p for p in inspect.signature(member).parameters.values() if p.name != "self"]
            args = [1.0 if p.annotation in (float, "float") else "x" for p in params if p.default is p.empty]
            value = member(keys, *args)
            if isinstance(value, str):
                names.add(value)
    return names


def test_the_span_holds_the_coordinator_key_frozen_drained_and_drills_only():
    keys = Keys()
    start, end = keys.coordination_span
    inside = {k for k in every_key(keys) if start <= k < end}
    assert inside == {keys.coordinator, keys.frozen, keys.drained, keys.drained_site("x"), keys.drills,
                      keys.drill("x")}
    outside = every_key(keys) - inside
    assert keys.views in outside and keys.ledger in outside and keys.releases in outside

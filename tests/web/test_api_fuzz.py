"""Schemathesis against the app's own OpenAPI schema, on the real app and a real PostgreSQL:
whatever it sends, the answer is never a 500, and a 4xx says why in its body."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error


@pytest.fixture(scope="module")
def fuzz_app(claims_db, tmp_path_factory):
    """The app as the lab runs it, where every client shares one address: reports without a
    partner key get an operator's per-address rate (FIREBREAK_API_RATE), not a person's 20 at
    once, so the fuzzer's requests reach the handlers instead of the limits."""
    from tests.conftest import ROOT
    from tests.web.conftest import serve_app

    with serve_app(claims_db, tmp_path_factory.mktemp("fuzz"), FIREBREAK_API_RATE="5000", FIREBREAK_PORTAL_RATE="600",
                   FIREBREAK_LEDGER=str(ROOT / "examples" / "ledger-2022.yaml")) as (url, _):
        yield {"url": url}


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_url(fuzz_app["url"] + "/openapi.json")


def operations(schema):
    return [r.ok() for r in schema.get_all_operations()]


# schemathesis' pytest plugin does not run under this pytest; its strategies, driven by
# hypothesis directly, are the same generator.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_the_api_fail(api_schema, mode):
    statuses = []
    for op in operations(api_schema):
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call(timeout=10)
            statuses.append(response.status_code)
            case.validate_response(response, checks=(not_a_server_error,))
            if 400 <= response.status_code < 500:
                body = response.json()
                assert body.get("error") or body.get("detail"), f"{op.label}: {response.status_code} without a reason"
        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no malformed ones
    assert len(statuses) >= 100, "the fuzzer hardly ran"
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= s < 500 for s in statuses)


def test_the_schema_covers_intake_and_status(api_schema):
    paths = {op.path for op in operations(api_schema)}
    assert {"/api/reports", "/api/reports/{report_id}", "/api/reports/status"} <= paths


def test_stateful_create_then_look_up(api_schema):
    """Schemathesis' stateful mode, following the schema's links: reports created by the fuzzer
    are looked up by the receipt they got and the contact they were sent with. Whatever the
    sequence, no 500; and every lookup of a report the fuzzer stored finds it."""
    from hypothesis import settings as hsettings

    links = api_schema.raw_schema["paths"]["/api/reports"]["post"]["responses"]["201"]["links"]
    assert "LookUpStatus" in links  # the link the state machine follows
    found, missing = [], []

    stored: set[tuple[str, str]] = set()

    class Machine(api_schema.as_state_machine()):
        def validate_response(self, response, case, **kwargs):
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:200])
            body = case.body if isinstance(case.body, dict) else {}
            if case.path == "/api/reports" and response.status_code == 201:
                stored.add((response.json()["receipt"], str(body.get("contact", "")).strip()))
            elif case.path == "/api/reports/status" and response.status_code != 429 and set(body) == {"receipt", "contact"}:
                key = (str(body.get("receipt", "")).strip().upper(), str(body.get("contact", "")).strip())
                if key in stored:
                    (found if response.status_code == 200 else missing).append((response.status_code, body, response.text[:200]))

    Machine.run(settings=hsettings(max_examples=25, stateful_step_count=4, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck)))
    assert found, "the state machine never followed the link from a stored report to its lookup"
    assert not missing, f"a report the API stored was not found by its receipt and contact: {missing[:5]}"

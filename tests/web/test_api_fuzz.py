"""Schemathesis against the app's own OpenAPI schema, on the real app and a real PostgreSQL:
whatever it sends, the answer is never a 500, and a 4xx says why in its body."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error


@pytest.fixture(scope="module")
def api_schema(claims_app):
    return schemathesis.openapi.from_url(claims_app["url"] + "/openapi.json")


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

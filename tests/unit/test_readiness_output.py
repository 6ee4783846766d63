"""The readiness report as files: the forked JSON writer against the in-process one, the YAML
fast path against PyYAML, and the caps that keep the shareable formats readable at scale."""

import json

import yaml
from hypothesis import given, settings

from firebreak.inputs import parse_yaml
from firebreak.readiness import analyse_all
from firebreak.readiness import render
from firebreak.readiness.fanout import json_report
from firebreak.topology import topology_from_dict
from tests.unit.test_readiness_props import topologies

from bench.check_scale import generate


def naive_json(report) -> dict:
    """The report as the JSON contract describes it, built the slow, obvious way."""
    return {
        "topology": report.topology, "sites": list(report.sites),
        "scenarios": [{"lost": list(r.lost), "failing": r.failing, "services": dict(r.states),
                       "findings": [{"kind": f.kind, "service": f.service, "path": list(f.path), "reason": f.reason}
                                    for f in r.findings]} for r in report.scenarios],
        "summary": dict(report.summary),
    }


def test_forked_json_is_the_in_process_report():
    topo = topology_from_dict(generate(400, 6))
    expected = naive_json(analyse_all(topo, pairs=True))
    for workers in (1, 2, 3):
        data, failing = json_report(topo, pairs=True, workers=workers)
        assert json.loads(data) == expected
        assert failing == (expected["summary"]["verdict"] == "fail")


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_json_report_matches_the_naive_rendering(data):
    topo = topology_from_dict(data)
    out, _ = json_report(topo, pairs=True, workers=1)
    assert json.loads(out) == naive_json(analyse_all(topo, pairs=True))


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_fast_yaml_reads_what_pyyaml_reads(data):
    text = yaml.safe_dump(data, sort_keys=False)
    parsed, _ = parse_yaml(text, "t.yaml")
    assert parsed == yaml.safe_load(text)


def test_line_numbers_are_found_lazily():
    _, lines = parse_yaml("name: x\nsites: [a, b]\nservices:\n  web:\n    replicas: {a: 1}\n", "t.yaml")
    assert lines.get(("services", "web", "replicas")) == 5
    assert lines.get(("sites", 1)) == 2
    assert lines.get(("nowhere",)) is None


def test_shareable_formats_cap_what_a_person_reads():
    report = analyse_all(topology_from_dict(generate(600, 5)), pairs=True)
    rows, hidden = render.matrix_rows(report)
    assert len(rows) == render.MATRIX_ROWS and hidden == 600 - render.MATRIX_ROWS
    page = render.to_html(report)
    assert f"{hidden} more services are not shown" in page
    assert "more findings (use --format json for all)" in page
    md = render.to_markdown(report)
    worst = report.worst_first()[0]
    assert f"… and {len(worst.findings) - render.FINDINGS_SHOWN} more findings" in md


def test_small_topologies_show_every_service():
    report = analyse_all(topology_from_dict(generate(50, 3)))
    rows, hidden = render.matrix_rows(report)
    assert rows == list(report.services) and hidden == 0

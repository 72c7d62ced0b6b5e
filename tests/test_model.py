"""The typed report: the schema is the types', 1.x reports read through the upgrader, bad reports located."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiler import SCHEMA_VERSION, derive
from profiler.errors import InputError
from profiler.model.io import SCHEMA_PATH, load_schema, parse, read_report, report_schema, to_json, validate
from profiler.model.report import NotMeasuredCode, Report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_REPORTS = ("report_fixnet.json", "report_betanet.json", "report_refnet_1.1.json")


def test_shipped_schema_is_the_one_generated_from_the_types():
    assert load_schema() == json.loads(json.dumps(report_schema(), sort_keys=True)), (
        f"{SCHEMA_PATH} is stale: regenerate it from profiler.model.io.report_schema()")
    assert load_schema()["x-schema-version"] == SCHEMA_VERSION


def _objects(node, path="$"):
    """Every object schema in the tree with its path."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for k, v in node.items():
            yield from _objects(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _objects(v, f"{path}[{i}]")


def test_no_untyped_object_in_the_schema():
    schema = report_schema()
    holes = []
    for path, node in _objects(schema):
        extra = node.get("additionalProperties")
        if "properties" in node:
            # Closed types are closed; the one model that allows extra keys is a rule (check-specific keys).
            if extra is not False and not path.endswith("$defs.Rule"):
                holes.append(f"{path}: properties without additionalProperties: false")
        elif not isinstance(extra, dict) or not extra:
            holes.append(f"{path}: an object with neither properties nor a typed value")
    assert not holes, "\n".join(holes)
    # The free-by-nature fields are the only untyped values ({} = any JSON): options and rule details.
    defs = schema["$defs"]
    assert defs["ManifestRate"]["properties"]["options"]["additionalProperties"] == {"$ref": "#/$defs/JsonValue"} \
        or "additionalProperties" in defs["ManifestRate"]["properties"]["options"]


@pytest.mark.parametrize("name", OLD_REPORTS)
def test_every_1x_fixture_reads_through_the_upgrader(name):
    data = json.loads((FIXTURES / name).read_text())
    assert data["schema_version"].startswith("1.")
    report = read_report(FIXTURES / name)
    assert report.schema_version == "2.0"
    # A 1.x reason becomes a code: "no CUDA device" is the machine's, not a failure.
    gpu = [r.not_measured["gpu"] for r in report.rates if "gpu" in r.not_measured]
    assert all(nm.code == NotMeasuredCode.NO_DEVICE for nm in gpu)
    assert gpu or name == "report_fixnet.json"      # fixnet carries fixture GPU figures
    # Round trip: what is written reads back equal.
    assert parse(json.loads(to_json(report))) == report


def test_a_1_1_resolution_keeps_its_figures_through_the_upgrade():
    old = json.loads((FIXTURES / "report_refnet_1.1.json").read_text())
    report = read_report(FIXTURES / "report_refnet_1.1.json")
    for e_old, e_new in zip(old["rates"][0]["resolutions"], report.rates[0].resolutions):
        assert derive.resolution_kmac(e_new, "decoder") == pytest.approx(e_old["kmac_px_decoder"], rel=1e-12)
        assert derive.resolution_kmac(e_new, "decoder", "vm") == pytest.approx(e_old["kmac_px_decoder_vm"], rel=1e-9)
        assert e_new.decoder.macs == e_old["macs_decoder"]
    # RefNet at 1920×1080 in the 1.1 report: 25,867,591,680 MACs / 2,073,600 px = 12.4747 kMAC/px.
    assert report.rates[0].resolutions[0].decoder.macs == 25_867_591_680


def test_a_broken_report_is_located_by_field_path():
    data = json.loads((FIXTURES / "report_fixnet.json").read_text())
    data["rates"][1]["images"][0]["counts"]["decoder"]["macs"] = "many"
    problems = validate(data)
    assert any(p.startswith("$.rates[1].images[0].counts.decoder.macs:") for p in problems), problems
    with pytest.raises(InputError) as exc:
        parse(data, "x/report.json")
    assert str(exc.value).startswith("x/report.json: rates[1].images[0].counts.decoder.macs:")


@pytest.mark.parametrize("data, words", [
    ([1, 2], "a JSON list"),
    ({"schema_version": "3.0"}, "schema '3.0' is not readable"),
    ({"schema_version": "2.0", "rates": []}, "submission"),
])
def test_malformed_reports_are_one_input_error(data, words):
    with pytest.raises(InputError) as exc:
        parse(data, "r.json")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_models_are_frozen():
    report = read_report(FIXTURES / "report_fixnet.json")
    with pytest.raises(Exception):
        report.rates[0].status = "failed"
    assert isinstance(report, Report)

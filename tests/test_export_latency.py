"""The model card's latency from a run's latency table: the table's prediction (with its
fingerprint and correction model) and the measured latency of the bundle's model.onnx here;
a table from another machine, one lacking a cell and a corrupt one are recorded, never fatal."""

from __future__ import annotations

import json

import pytest
import torch
from test_export import SPEC, trained_like

from nas_attn.arch import canonicalize
from nas_attn.cost.cells import spec_cells
from nas_attn.cost.latency_table import LatencyTable
from nas_attn.cost.timing import fingerprint
from nas_attn.export import export_bundle
from nas_attn.export.latency_card import fingerprint_id

SIZE = (3, 16, 16)


def _table(path, cpu=None, drop=0):
    cells = {c.key: {"desc": dict(c.desc), "median_ms": 0.5, "q1_ms": 0.5, "q3_ms": 0.5,
                     "repeats": 1} for c in spec_cells(canonicalize(SPEC), SIZE)[drop:]}
    fp = fingerprint("onnxruntime", "cpu", 1)
    settings = {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "batch": 1,
                "input_size": list(SIZE), "warmup": 1, "repeats": 5}
    table = LatencyTable(settings, {**fp, **({"cpu": cpu} if cpu else {})}, cells,
                         overhead_ms=0.1)
    table.save(path)
    return table


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return trained_like()


def _card(model, tmp_path, table_path, name="b"):
    out = export_bundle(SPEC, model, tmp_path / name, input_size=SIZE, latency_table=table_path,
                        metadata={"latency": {"device": "cpu"}})
    return json.loads((out / "card.json").read_text()), (out / "MODEL_CARD.md").read_text()


def test_the_card_states_predicted_and_measured_latency(model, tmp_path):
    table = _table(tmp_path / "t.json")
    card, md = _card(model, tmp_path, tmp_path / "t.json")
    lat = card["latency"]
    assert lat["device"] == "cpu"  # what the caller said is kept
    assert lat["predicted_ms"] == pytest.approx(table.predict(canonicalize(SPEC)))
    assert lat["measured_ms"] > 0 and lat["measured_q1_ms"] <= lat["measured_q3_ms"]
    assert lat["same_device"] is True and lat["correction_model"] == "additive"
    assert lat["table_fingerprint_id"] == fingerprint_id(dict(table.fingerprint))
    assert lat["measured_fingerprint_id"] == lat["table_fingerprint_id"]
    assert "predicted_ms" in md and "measured_ms" in md and lat["table_fingerprint_id"] in md


def test_a_foreign_incomplete_or_corrupt_table_is_recorded_not_fatal(model, tmp_path):
    _table(tmp_path / "far.json", cpu="another CPU")
    lat = _card(model, tmp_path, tmp_path / "far.json", "far")[0]["latency"]
    assert lat["same_device"] is False and lat["table_fingerprint"]["cpu"] == "another CPU"
    _table(tmp_path / "part.json", drop=1)
    lat = _card(model, tmp_path, tmp_path / "part.json", "part")[0]["latency"]
    assert "predicted_ms" not in lat and "not in the latency table" in lat["predicted_error"]
    (tmp_path / "bad.json").write_text("{")
    lat = _card(model, tmp_path, tmp_path / "bad.json", "bad")[0]["latency"]
    assert "not valid JSON" in lat["error"] and "measured_ms" not in lat

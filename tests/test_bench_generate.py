"""Generating a tabular benchmark through the runner, cut down: 3 architectures x 2 seeds x 2
epochs on 64 images, real Ray workers and the Optuna SQLite storage; then a resume that has
nothing left to train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnbench.generate import TableProposer, pair_hash

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "tabular" / "generate_table.py"


def _generate(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", "t.npz", "--run-dir", "gen", "--limit", "3",
         "--seeds", "0", "1", "--epochs", "2", "--train-size", "64", *extra],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
        timeout=420, cwd=tmp_path)


def test_generate_cut_down_table_then_resume(tmp_path):
    import optuna

    from attnbench.table import load_table
    from nas_attn.search import storage

    res = _generate(tmp_path)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    t = load_table(tmp_path / "t.npz")
    assert t.acc.shape == (3, 2, 2) and np.isfinite(t.acc).all()
    assert ((t.acc >= 0) & (t.acc <= 1)).all()
    assert t.meta["train"]["epochs"] == 2 and t.meta["data"]["train_size"] == 64
    assert (t.seconds > 0).all() and (t.flops > 0).all()

    # The curves are the runner's: each COMPLETE trial's final value is the table's last epoch.
    study = optuna.load_study(study_name="tabular-attention",
                              storage=storage.default_url(tmp_path / "gen"))
    complete = [tr for tr in study.trials if tr.state.name == "COMPLETE"]
    assert len(complete) == 6
    seen = set()
    for tr in complete:
        a, s = tr.user_attrs["table_arch"], tr.user_attrs["table_seed"]
        seen.add((a, s))
        assert tr.user_attrs["spec_hash"] == pair_hash(t.spec_hash[a], s)
        assert tr.values[0] == pytest.approx(float(t.acc[a, list(t.seeds).index(s), -1]))
        assert tr.values[1] == pytest.approx(float(t.flops[a]))
    assert seen == {(a, s) for a in range(3) for s in (0, 1)}

    again = _generate(tmp_path, "--resume", "--out", "t2.npz")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "trained already" in again.stdout
    t2 = load_table(tmp_path / "t2.npz")
    np.testing.assert_array_equal(t2.acc, t.acc)
    span = t.meta["generation"]["trials_span_seconds"]
    assert 0 < span <= t.meta["generation"]["generation_seconds"]
    assert t2.meta["generation"]["trials_span_seconds"] == span  # the resume trained nothing


def test_proposer_is_seed_major_and_skips_trained_pairs():
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    specs = [{"i": i} for i in range(3)]
    hashes = ["a", "b", "c"]
    costs = [{"flops": 1.0}] * 3
    prop = TableProposer(specs, hashes, costs, seeds=[0, 1], skip={pair_hash("b", 0)})
    got = []
    for _ in range(5):
        tr = study.ask()
        p = prop(tr)
        got.append((tr.user_attrs["table_arch"], tr.user_attrs["table_seed"]))
        assert p.spec_hash == pair_hash(hashes[got[-1][0]], got[-1][1])
    assert got == [(0, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def test_collect_reads_the_runners_per_epoch_record():
    """The table's curves come from each trial's ``intermediate`` record in the Optuna
    storage; reused trials and trials missing an epoch leave NaN."""
    import optuna

    from attnbench.generate import collect, curve_of

    study = optuna.create_study(directions=["maximize", "minimize"])

    def add(arch: int, seed: int, curve: dict, **attrs) -> None:
        tr = study.ask()
        for k, v in {"table_arch": arch, "table_seed": seed, "intermediate": curve,
                     "train_seconds": 2.5, **attrs}.items():
            tr.set_user_attr(k, v)
        study.tell(tr, [0.5, 1.0])

    full = {str(e): [e / 10, 1.0] for e in (1, 2, 3)}
    add(0, 0, full)
    add(1, 0, {"1": [0.1, 1.0], "3": [0.3, 1.0]})  # epoch 2 missing
    add(1, 1, full, reused=True)
    add(0, 7, full)  # a seed outside the table
    acc, secs = collect(study, n_archs=2, seeds=[0, 1], epochs=3)
    np.testing.assert_allclose(acc[0, 0], [0.1, 0.2, 0.3], rtol=1e-6)
    assert np.isnan(acc[1]).all() and np.isnan(acc[0, 1]).all()
    assert secs[0, 0] == 2.5 and np.isnan(secs[1]).all()
    assert curve_of(study.trials[0], 2) == [0.1, 0.2]
    assert curve_of(study.trials[1], 3) is None

"""Every view of one run folder shows the same front and hypervolume (issue 18).

A real search (Ray, Optuna SQLite storage, the synthetic evaluator) over three architectures
with six trials, so the searcher must reuse duplicates; then the closing summary,
``load_run``, the dashboard, ``nas-attn export --pick front``'s selection and
``nas-attn ablate``'s choice of trials are compared.
"""

from __future__ import annotations

import pytest

from nas_attn.errors import ConfigError
from nas_attn.objectives import REFERENCE_ATTR

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    from nas_attn.search.runner import run_search
    from nas_attn.search.setup import SearchOptions, synthetic_setup
    from nas_attn.search.synthetic import SyntheticProblem

    out = tmp_path_factory.mktemp("views") / "run"
    setup = synthetic_setup(SyntheticProblem(choices=3, epochs=2), "views", SearchOptions(
        trials=6, sampler="random", seed=0, max_concurrent=1))
    return out, run_search(setup, out=out, quiet=True, num_cpus=2)


def test_every_view_shows_the_same_front_and_hypervolume(searched):
    import nas_attn
    from nas_attn.ablation.config import _from_run
    from nas_attn.export.picks import select
    from nas_attn.viz.dashboard import build, load_run_inputs, write_dashboard

    out, summary = searched
    run = nas_attn.load_run(out)
    df = run.trials
    reused = df[df["reused"] == True]  # noqa: E712
    assert len(reused) >= 3, "six trials over three architectures reuse at least three"
    front = sorted(int(n) for n in run.front()["number"])
    assert front and not set(front) & set(reused["number"])
    hashes = df.set_index("number").loc[front, "spec_hash"]
    assert hashes.is_unique  # one row per architecture

    # the closing summary (nas-attn search prints it)
    assert summary.front_size == len(front)
    assert summary.hypervolume == pytest.approx(run.hypervolume(), rel=1e-12)
    assert summary.hypervolume is not None and 0 < summary.hypervolume <= 1
    # the reference point was recorded once, in the study, and every reader takes it
    recorded = run.study.user_attrs[REFERENCE_ATTR]
    assert run.reference == (recorded["val_accuracy"], recorded["flops"]) == (0.0, 3000.0)
    assert summary.hv_reference == "HV reference: val_accuracy 0, flops 3000"

    # the dashboard
    study, info, yaml_text = load_run_inputs(out)
    d = build(study, info, yaml_text)
    assert sorted(d.pareto.front) == front
    assert d.hypervolume.reference == run.reference
    assert d.hypervolume.hypervolume[-1] == pytest.approx(run.hypervolume(), rel=1e-12)
    assert write_dashboard(out).exists()

    # nas-attn export RUN --pick front: the same trials, the reused duplicates left out
    picked = select(run.trials, ["front"], run.objectives)
    assert sorted(s.number for s in picked) == front
    assert {s.front["front_size"] for s in picked} == {len(front)}

    # nas-attn ablate RUN (without --trial) lists the front's trials to choose from
    with pytest.raises(ConfigError) as e:
        _from_run(out, None)
    assert e.value.choices == front


def test_a_run_without_a_recorded_reference_gets_the_same_one_by_the_rule(searched):
    import nas_attn

    out, _ = searched
    run = nas_attn.load_run(out)
    expected, hv = run.reference, run.hypervolume()
    run.study.set_user_attr(REFERENCE_ATTR, None)  # as a run folder written before it existed
    try:
        old = nas_attn.load_run(out)
        assert old.reference == expected  # the synthetic problem's costliest architecture
        assert old.hypervolume() == pytest.approx(hv, rel=1e-12)
    finally:
        run.study.set_user_attr(REFERENCE_ATTR, {"val_accuracy": expected[0],
                                                 "flops": expected[1]})


def test_the_study_names_its_objectives_for_optuna_dashboard(searched):
    import nas_attn

    out, _ = searched
    assert nas_attn.load_run(out).study.metric_names == ["val_accuracy", "flops"]

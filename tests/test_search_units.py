"""The search runner's decision logic, with a real (in-memory) Optuna study and no Ray."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
from optuna.trial import TrialState

from nas_attn.errors import ConfigError, NonFiniteLossError, OutOfMemoryError, TrialError
from nas_attn.search import fingerprint as fp
from nas_attn.search import storage as st
from nas_attn.search.outcome import COMPLETE, FAIL, PRUNED, Objective, classify, reason_of
from nas_attn.search.searcher import AskTellSearcher, is_counted
from nas_attn.search.synthetic import SyntheticProblem, quality
from nas_attn.search.trainable import check_metrics

OBJ = (Objective("val_accuracy", "maximize"), Objective("flops", "minimize"))


def test_classify_complete_pruned_and_failures():
    costs = {"flops": 100.0}
    full = classify({"epoch": 3, "val_accuracy": 0.8}, OBJ, 3, costs)
    assert (full.state, full.values) == (COMPLETE, (0.8, 100.0))
    part = classify({"epoch": 1, "val_accuracy": 0.4}, OBJ, 3, costs)
    assert part.state == PRUNED and part.values is None
    assert part.attrs == {"epochs_trained": 1, "last_accuracy": 0.4}
    nan = classify({"epoch": 3, "val_accuracy": math.nan}, OBJ, 3, costs)
    assert nan.state == FAIL and nan.attrs["fail_reason"] == "nonfinite"
    missing = classify({"epoch": 3}, OBJ, 3, costs)
    assert missing.attrs["fail_reason"] == "missing_metric"
    assert classify(None, OBJ, 3, costs).attrs["fail_reason"] == "missing_metric"


def test_trial_errors_survive_pickling_and_give_their_reason():
    for err, reason in ((NonFiniteLossError("x"), "nonfinite"), (OutOfMemoryError("y"), "oom"),
                        (TrialError("missing_metric", "z"), "missing_metric")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and back.reason == reason
        assert reason_of(back)[0] == reason
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = OutOfMemoryError("inner")
    assert reason_of(wrapped)[0] == "oom"
    assert reason_of(ValueError("boom")) == ("error", "boom")


def test_check_metrics_refuses_missing_and_nonfinite_accuracy():
    assert check_metrics({"val_accuracy": 0.5, "x": [1]}, 2) == {"val_accuracy": 0.5, "epoch": 2}
    with pytest.raises(TrialError) as e:
        check_metrics({"train_loss": 1.0}, 1)
    assert e.value.reason == "missing_metric"
    with pytest.raises(NonFiniteLossError):
        check_metrics({"val_accuracy": float("inf")}, 1)


def test_fingerprint_differences_name_the_changed_settings():
    a = {"objectives": ["val_accuracy", "flops"], "train": {"epochs": 3, "lr": 0.1}}
    b = {"objectives": ["val_accuracy", "params"], "train": {"epochs": 3, "lr": 0.2}}
    assert fp.differences(a, a) == []
    assert fp.differences(a, b) == ["objectives", "train.lr"]
    with pytest.raises(ConfigError, match=r"train\.lr"):
        fp.check_compatible("s", a, b)
    assert fp.fingerprint_hash(a) == fp.fingerprint_hash(dict(reversed(a.items())))


def test_open_study_waits_for_a_concurrent_creators_fingerprint(tmp_path):
    """A driver that loads a study between another driver's create_study and its fingerprint
    (the race a shared PostgreSQL study hit in CI) waits for it instead of refusing."""
    import threading

    from nas_attn.search.runner import open_study
    from nas_attn.search.setup import synthetic_setup

    setup = synthetic_setup(SyntheticProblem(choices=5, epochs=1), "race")
    storage = st.open_storage(f"sqlite:///{tmp_path / 'race.db'}")
    created = optuna.create_study(study_name="race", storage=storage,
                                  directions=setup.directions)  # no fingerprint yet
    timer = threading.Timer(0.5, created.set_user_attr, (fp.ATTR, dict(setup.fingerprint)))
    timer.start()
    try:
        study = open_study(storage, setup, sampler=None, wait_s=20)
    finally:
        timer.join()
    assert study.user_attrs[fp.ATTR] == dict(setup.fingerprint)

    # a foreign study stays refused: empty ones after the wait, ones with trials at once
    optuna.create_study(study_name="foreign", storage=storage, directions=setup.directions)
    foreign = synthetic_setup(SyntheticProblem(choices=5, epochs=1), "foreign")
    with pytest.raises(ConfigError, match="not created by nas-attn"):
        open_study(storage, foreign, sampler=None, wait_s=0.3)
    optuna.load_study(study_name="foreign", storage=storage).add_trial(
        optuna.trial.create_trial(values=[0.5, 1.0], state=TrialState.COMPLETE))
    with pytest.raises(ConfigError, match="not created by nas-attn"):
        open_study(storage, foreign, sampler=None, wait_s=600)


def test_open_study_names_the_objectives_of_new_and_older_studies(tmp_path):
    """optuna-dashboard labels objectives by the study's metric names (else "0" and "1")."""
    from nas_attn.search.runner import open_study
    from nas_attn.search.setup import synthetic_setup

    setup = synthetic_setup(SyntheticProblem(choices=5, epochs=1), "named")
    storage = st.open_storage(f"sqlite:///{tmp_path / 'named.db'}")
    assert open_study(storage, setup, sampler=None).metric_names == ["val_accuracy", "flops"]
    old = synthetic_setup(SyntheticProblem(choices=5, epochs=1), "older")
    created = optuna.create_study(study_name="older", storage=storage,
                                  directions=old.directions)  # as an older nas-attn made it
    created.set_user_attr(fp.ATTR, dict(old.fingerprint))
    assert created.metric_names is None
    assert open_study(storage, old, sampler=None).metric_names == ["val_accuracy", "flops"]


def test_storage_url_redaction_and_validation():
    url = "postgresql://alice:s3cret@db.example:5432/nas"
    assert st.redact(url) == "postgresql://alice:***@db.example:5432/nas"
    assert "s3cret" not in st.redact(url) and st.is_redacted(st.redact(url))
    assert st.redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(ConfigError, match="scheme"):
        st.validate_url("redis://localhost")


def _searcher(problem: SyntheticProblem, target: int) -> AskTellSearcher:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    return AskTellSearcher(study, problem.propose, OBJ, problem.epochs, target, "run1")


def test_searcher_tells_the_truth_and_reuses_duplicates():
    s = _searcher(SyntheticProblem(choices=2, epochs=3), target=6)
    configs = {}
    for i in range(6):  # two choices: only two specs are ever trained
        c = s.suggest(f"t{i}")
        if isinstance(c, dict):
            configs[f"t{i}"] = c
    assert 1 <= len(configs) <= 2
    assert len({c["spec_hash"] for c in configs.values()}) == len(configs)
    ids = list(configs)
    s.on_trial_result(ids[0], {"epoch": 1, "val_accuracy": 0.3})
    s.on_trial_complete(ids[0], {"epoch": 1, "val_accuracy": 0.3})  # stopped at a rung
    if len(ids) > 1:
        s.on_trial_complete(ids[1], {"epoch": 3, "val_accuracy": 0.9})
    assert s.suggest("late") == "FINISHED"
    trials = s.study.get_trials()
    assert len(trials) == 6 and all(is_counted(t) for t in trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.values is None for t in pruned)
    assert pruned[0].user_attrs["epochs_trained"] == 1
    reused = [t for t in trials if t.user_attrs.get("reused")]
    assert len(reused) == 6 - len(ids)
    by_hash = {t.user_attrs["spec_hash"]: t for t in trials if not t.user_attrs.get("reused")}
    for t in reused:  # a reused trial carries the original's outcome
        orig = by_hash[t.user_attrs["spec_hash"]]
        assert (t.state, t.values) == (orig.state, orig.values)
        assert t.user_attrs["reused_from"] == orig.number


def test_searcher_error_reason_and_over_budget_do_not_stall():
    s = _searcher(SyntheticProblem(choices=6, epochs=2, max_flops=3000), target=2)
    c1 = s.suggest("a")
    assert isinstance(c1, dict) and c1["costs"]["flops"] <= 3000
    s.on_trial_complete("a", None, error=True)
    s.resolve_error("a", "oom", "oom: no memory")
    c2 = s.suggest("b")
    s.on_trial_complete("b", {"epoch": 2, "val_accuracy": 0.7})
    assert s.suggest("c") == "FINISHED"
    trials = s.study.get_trials()
    over = [t for t in trials if t.user_attrs.get("fail_reason") == "over_budget"]
    assert all(not is_counted(t) and t.user_attrs["flops"] > 3000 for t in over)
    failed = [t for t in trials if t.user_attrs.get("fail_reason") == "oom"]
    assert len(failed) == 1 and is_counted(failed[0])
    assert sum(is_counted(t) for t in trials) == 2
    assert isinstance(c2, dict)


def test_synthetic_quality_is_fixed_and_bounded():
    q = [quality(i) for i in range(20)]
    assert all(0.5 <= x <= 0.95 for x in q) and len(set(q)) > 10
    assert q == [quality(i) for i in range(20)]


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "gp"])
def test_samplers_build_quietly_and_walk_a_conditional_space(name, recwarn, caplog):
    """The runner's samplers (TPE is multivariate with group=True): no experimental-feature
    warning reaches the user, nor GP's log line per conditional parameter and trial, and the
    conditional ``position`` parameter is only asked when a module is chosen."""
    import warnings

    from nas_attn.search.samplers import make_sampler
    from nas_attn.space import parse_space

    space = parse_space({
        "name": "cond", "backbone": "tiny", "num_classes": 10, "input_size": [3, 16, 16],
        "stages": {"default": {"attention": {"none": None, "se": None},
                               "position": ["post_bn", "post_add"], "blocks": "all"}}},
        "test space")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.enable_propagation()  # Optuna's log lines reach caplog
    try:
        with warnings.catch_warnings(), caplog.at_level("WARNING", logger="optuna"):
            warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(directions=["maximize", "minimize"],
                                        sampler=make_sampler(name, 0))
            for i in range(25):
                trial = study.ask()
                space.suggest(trial)
                for s in range(3):
                    has_pos = f"stage{s}.position" in trial.params
                    assert has_pos == (trial.params[f"stage{s}.attention"] != "none"), trial.params
                study.tell(trial, [i % 7 / 7, float(len(trial.params))])
    finally:
        optuna.logging.disable_propagation()
    assert not [w for w in recwarn if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert "sampled independently" not in caplog.text


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_startup_trials_reach_the_model_samplers(name):
    """``search.startup_trials`` sets the random trials a tpe/gp sampler starts with; a CLI
    ``--sampler`` without a startup model drops the study's value instead of failing."""
    from nas_attn.search.from_study import options_for
    from nas_attn.search.samplers import make_sampler
    from nas_attn.search.study import SearchSettings

    assert make_sampler(name, 0, startup_trials=3)._n_startup_trials == 3
    assert make_sampler(name, 0)._n_startup_trials == 10  # Optuna's default
    study = SearchSettings(sampler=name, startup_trials=4)
    assert options_for(study, {}).startup_trials == 4
    assert options_for(study, {"sampler": "random"}).startup_trials is None
    assert options_for(study, {"startup_trials": 6}).startup_trials == 6
    with pytest.raises(ConfigError, match=r"search\.startup_trials"):
        options_for(study, {"sampler": "random", "startup_trials": 6})


@pytest.mark.parametrize("name, default", [("tpe", False), ("gp", True)])
def test_learn_from_pruned_goes_from_the_study_to_the_runners_sampler(name, default):
    """``search.learn_from_pruned`` (null: gp yes, tpe no) picks the pruned-aware sampler; a
    CLI ``--sampler`` without a model drops the study's value instead of failing."""
    from nas_attn.search import runner
    from nas_attn.search.from_study import options_for
    from nas_attn.search.setup import SearchOptions, synthetic_setup
    from nas_attn.search.study import SearchSettings
    from nas_attn.search.synthetic import SyntheticProblem

    def learns(opts):
        setup = synthetic_setup(SyntheticProblem(choices=4, epochs=1), "s", opts)
        return type(runner._sampler(setup, seed=0)).__name__.startswith("PrunedAware")

    for value, expected in [(None, default), (True, True), (False, False)]:
        study = SearchSettings(sampler=name, learn_from_pruned=value)
        opts = options_for(study, {})
        assert opts.learn_from_pruned is value
        assert learns(opts) is expected
        assert SearchOptions(**opts.to_dict()) == opts  # a resume rebuilds the same options
    on = SearchSettings(sampler=name, learn_from_pruned=True)
    assert options_for(on, {"sampler": "random"}).learn_from_pruned is None
    assert options_for(on, {"learn_from_pruned": False}).learn_from_pruned is False
    with pytest.raises(ConfigError, match=r"search\.learn_from_pruned"):
        options_for(on, {"sampler": "nsga2", "learn_from_pruned": True})


def test_every_run_segment_builds_its_sampler_with_the_options_startup():
    from nas_attn.search import runner
    from nas_attn.search.setup import SearchOptions, synthetic_setup
    from nas_attn.search.synthetic import SyntheticProblem

    opts = SearchOptions(trials=4, sampler="gp", startup_trials=2)
    setup = synthetic_setup(SyntheticProblem(choices=4, epochs=1), "s", opts)
    assert runner._sampler(setup, seed=7)._n_startup_trials == 2
    # a resumed run rebuilds its options from run.json's record of them
    again = SearchOptions(**opts.to_dict())
    assert again.startup_trials == 2


def test_stop_dominated_goes_from_the_study_file_to_the_runners_rule(tmp_path):
    import shutil
    from pathlib import Path

    from nas_attn.search import runner
    from nas_attn.search.from_study import setup_from_study_file

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "search_spaces", tmp_path / "search_spaces")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "quickstart.yaml"
    text = (root / "studies" / "quickstart.yaml").read_text()
    old = "grace_epochs: 2}"
    assert text.count(old) == 1
    path.write_text(text)
    assert runner._halving(setup_from_study_file(path)).stop_dominated is False
    path.write_text(text.replace(old, "grace_epochs: 2, stop_dominated: true}"))
    assert runner._halving(setup_from_study_file(path)).stop_dominated is True


def test_a_synthetic_study_checks_its_faults_and_objectives(tmp_path):
    from nas_attn.search.from_study import setup_from_study_file

    def study(text: str):
        path = tmp_path / "s.yaml"
        path.write_text("name: s\nsynthetic: {choices: 4, epochs: 1" + text)
        return setup_from_study_file(path)

    with pytest.raises(ConfigError, match=r"synthetic\.faults\.1: unknown fault") as e:
        study(", faults: {1: explode}}\n")
    assert e.value.value == "explode" and "oom" in e.value.choices
    with pytest.raises(ConfigError, match="flops is always minimized"):
        study("}\nobjectives: [{name: flops, direction: maximize}]\n")
    with pytest.raises(ConfigError, match="not reported by the synthetic problem"):
        study("}\nobjectives: [val_accuracy, latency_ms]\n")
    chosen = study("}\nobjectives: [val_accuracy, params]\n").objectives
    assert chosen == (Objective("val_accuracy", "maximize"), Objective("params", "minimize"))
    assert [o.name for o in study("}\n").objectives] == ["val_accuracy", "flops"]

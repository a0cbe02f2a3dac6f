"""The one-shot pipeline (nas_attn/search/oneshot_plan.py, oneshot_run.py; docs/one-shot.md):
which predicted architectures are confirmed (pure), the study's ``evaluator: supernet`` /
``oneshot:`` refusals, the fingerprint, the search phase's resume on the driver, the supernet
phase's decisions and the multi-seed confirmation's evaluator, without Ray. The end-to-end run
through Ray (killed, resumed, resumed again) is tests/test_oneshot_kill.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from nas_attn.errors import ConfigError
from nas_attn.search.oneshot_plan import (
    CONFIRM_CAP,
    OneShotSettings,
    Prediction,
    pick_confirmations,
    still_to_confirm,
)

MAX_MIN = ["maximize", "minimize"]
STUDY = {
    "name": "tiny-oneshot",
    "space": {"name": "tiny-os", "backbone": "tiny",
              "stages": {"default": {"attention": {"none": None, "se": {"rd_ratio": [0.25]},
                                                   "eca": {"kernel_size": [3]}},
                                     "position": ["post_bn"]}}},
    "data": {"name": "cluttered-digits", "image_size": 16, "train_size": 256, "val_size": 128,
             "test_size": 64},
    "train": {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "threads": 1},
    "early_stopping": {"enabled": False},
    "search": {"trials": 4, "sampler": "tpe", "seed": 0, "max_concurrent": 2,
               "cpus_per_trial": 1},
    "evaluator": "supernet",
    "oneshot": {"epochs": 1, "proposals": 8, "confirm": 2, "calibration_batches": 2},
}


def _p(h: str, acc: float, flops: float, number: int = 0) -> Prediction:
    return Prediction(h, (acc, flops), {"x": h}, number)


def _write(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# -- which architectures are confirmed (pure) ------------------------------------------------


def test_picks_are_the_predicted_front_ends_first_then_the_next_layer():
    preds = [_p("a", 0.9, 100, 0), _p("b", 0.5, 10, 1), _p("c", 0.7, 50, 2),
             _p("d", 0.6, 60, 3),  # dominated by c
             _p("e", 0.8, 80, 4), _p("a", 0.9, 100, 5)]  # a duplicate counts once
    front = pick_confirmations(preds, MAX_MIN, None)
    # the ends (infinite crowding distance), then c (1.53: 0.75 + 0.78) before e (1.06)
    assert [p.spec_hash for p in front] == ["a", "b", "c", "e"]
    assert front[0].number == 0  # the first trial of a duplicate
    assert [p.spec_hash for p in pick_confirmations(preds, MAX_MIN, 2)] == ["a", "b"]
    five = pick_confirmations(preds, MAX_MIN, 5)
    assert [p.spec_hash for p in five] == ["a", "b", "c", "e", "d"]  # filled from layer 2
    assert len(pick_confirmations(preds, MAX_MIN, 50)) == 5  # no more than there are
    assert pick_confirmations([], MAX_MIN, 3) == []


def test_default_k_is_the_front_size_capped():
    line = [_p(f"h{i}", 0.5 + i / 100, 10 + i, i) for i in range(CONFIRM_CAP + 5)]
    assert len(pick_confirmations(line, MAX_MIN, None)) == CONFIRM_CAP


def test_still_to_confirm_keeps_the_order_of_the_picks():
    picks = [_p("a", 0.9, 1), _p("b", 0.8, 0.5), _p("c", 0.7, 0.1)]
    assert [p.spec_hash for p in still_to_confirm(picks, {"b"})] == ["a", "c"]
    assert still_to_confirm(picks, {"a", "b", "c"}) == []


def test_an_owned_trial_with_fixed_parameters_suggests_them():
    """How a confirmation becomes a trial of the run's study (what enqueue_trial fixes)."""
    import optuna

    from nas_attn.search.ownership import ask_owned

    study = optuna.create_study()
    t = ask_owned(study, "r1", fixed_params={"stage0.attention": "se", "k": 3})
    assert t.suggest_categorical("stage0.attention", ["none", "se"]) == "se"
    assert t.suggest_int("k", 1, 5) == 3 and t.user_attrs["run_id"] == "r1"
    free = ask_owned(study, "r1")
    assert free.suggest_int("k", 1, 5) in range(1, 6)
    assert "fixed_params" not in study.trials[1].system_attrs


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field", "value"), [
    ({"mode": "darts"}, "oneshot.mode", "darts"),
    ({"epochs": 0}, "oneshot.epochs", 0),
    ({"proposals": "many"}, "oneshot.proposals", "many"),
    ({"confirm": 0}, "oneshot.confirm", 0),
    ({"seeds": 0}, "oneshot.seeds", 0),
    ({"calibration_batches": 1.5}, "oneshot.calibration_batches", 1.5),
    ({"epoch": 3}, "oneshot.epoch", "epoch"),
])
def test_bad_oneshot_settings_are_refused_naming_the_field(change, field, value):
    from nas_attn.search.study import parse_study

    data = copy.deepcopy(STUDY)
    data["oneshot"].update(change)
    with pytest.raises(ConfigError) as e:
        parse_study(data)
    assert e.value.field == field and e.value.value == value
    if field == "oneshot.mode":
        assert tuple(e.value.choices) == ("spos", "fairnas", "learned")
    if field == "oneshot.epoch":
        assert "epochs" in e.value.choices


def test_an_unknown_evaluator_and_settings_without_the_supernet_are_refused():
    from nas_attn.search.study import parse_study

    with pytest.raises(ConfigError) as e:
        parse_study({**STUDY, "evaluator": "oracle"})
    assert e.value.field == "evaluator" and tuple(e.value.choices) == ("train", "supernet")
    with pytest.raises(ConfigError) as e:
        parse_study({**STUDY, "evaluator": "train"})
    assert e.value.field == "oneshot"


@pytest.mark.parametrize("one_shot_flag", [False, True])
def test_a_space_the_supernet_cannot_hold_is_refused_before_anything(tmp_path, one_shot_flag):
    from nas_attn.search.from_study import setup_from_study_file

    data = copy.deepcopy(STUDY)
    data["space"]["stages"]["default"]["fusion"] = ["none", "sda"]
    if one_shot_flag:  # a normal study, `search --one-shot`
        del data["evaluator"], data["oneshot"]
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"stages\[0\]\.fusion.*sda"):
        setup_from_study_file(path, one_shot=one_shot_flag)
    assert list(tmp_path.iterdir()) == [path]  # nothing written


@pytest.mark.slow
def test_the_cli_refuses_an_unsupported_space_with_one_shot_exit_2(tmp_path):
    """A user's normal study and `search --one-shot` (the library's refusals of every
    `oneshot` field are tested above; the CLI turns a ConfigError into exit 2)."""
    from cli_helpers import assert_refused

    data = {k: v for k, v in copy.deepcopy(STUDY).items() if k not in ("evaluator", "oneshot")}
    data["space"]["stages"]["default"]["fusion"] = ["none", "sda"]
    _write(tmp_path, data)
    assert_refused(["search", "study.yaml", "--one-shot", "--out", "run"], tmp_path,
                   "stages[0].fusion", "sda")


def test_one_shot_flag_sets_the_evaluator_with_default_settings(tmp_path):
    from nas_attn.search.from_study import setup_from_study_file

    data = {k: v for k, v in STUDY.items() if k not in ("evaluator", "oneshot")}
    path = _write(tmp_path, data)
    assert setup_from_study_file(path).oneshot is None
    setup = setup_from_study_file(path, one_shot=True)
    assert setup.oneshot == OneShotSettings().to_dict()
    assert setup.fingerprint["oneshot"] == OneShotSettings().to_dict()
    assert setup.resolved["evaluator"] == "supernet"  # study.yaml rebuilds it on resume


def test_changed_oneshot_settings_are_refused_naming_the_field(tmp_path):
    from nas_attn.search import storage as st
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import open_study

    storage = st.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    first = setup_from_study_file(_write(tmp_path, STUDY, "a.yaml"))
    open_study(storage, first, None)
    changed = copy.deepcopy(STUDY)
    changed["oneshot"]["epochs"] = 2
    with pytest.raises(ConfigError, match=r"oneshot\.epochs"):
        open_study(storage, setup_from_study_file(_write(tmp_path, changed, "b.yaml")), None,
                   wait_s=0)


# -- the search phase, on the driver: resumed, nothing scored twice ---------------------------


class _Ctx:
    def __init__(self, run_dir: Path) -> None:
        from optuna.samplers import RandomSampler

        self.run_dir = run_dir
        self.info = {"run_id": "r1"}
        self.sampler = lambda n: RandomSampler(seed=n)

    def say(self, text: str) -> None:
        pass


def test_search_phase_resumes_without_scoring_again(tmp_path, monkeypatch):
    import optuna

    from nas_attn.oneshot import build_supernet
    from nas_attn.search import oneshot_run
    from nas_attn.search import storage as st
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import open_study

    setup = setup_from_study_file(_write(tmp_path, STUDY))
    study = open_study(st.open_storage(f"sqlite:///{tmp_path / 'study.db'}"), setup, None)
    supernet = build_supernet(setup.propose.space)
    calls = []
    import nas_attn.oneshot as oneshot  # search_phase scores through nas_attn.oneshot.score

    original = oneshot.score

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    monkeypatch.setattr(oneshot, "score", counting)
    ctx = _Ctx(tmp_path)
    first = oneshot_run.search_phase(setup, study, supernet, OneShotSettings(proposals=3), ctx)
    assert len(first) == 3 and len(calls) <= 3
    scored = len(calls)
    more = oneshot_run.search_phase(setup, study, supernet, OneShotSettings(proposals=5), ctx)
    assert len(more) == 5 and {p.number for p in first} <= {p.number for p in more}
    assert len(calls) - scored <= 2  # only the two new proposals (duplicates: none)
    again = oneshot_run.search_phase(setup, study, supernet, OneShotSettings(proposals=5), ctx)
    assert [p.number for p in again] == [p.number for p in more] and len(calls) - scored <= 2
    pstudy = optuna.load_study(study_name="tiny-oneshot:predicted", storage=study._storage)
    values = {t.user_attrs["spec_hash"]: tuple(t.values) for t in pstudy.trials}
    for p in more:  # accuracy from the supernet, FLOPs from the cost model
        assert 0 <= p.values[0] <= 1 and p.values[1] > 0 and values[p.spec_hash] == p.values


# -- end to end, through Ray: tests/test_oneshot_kill.py (kill -9, resume, resume again) -------


# -- the dashboard's view ---------------------------------------------------------------------


def _study_with(rows):
    import optuna

    study = optuna.create_study(directions=MAX_MIN)
    study.set_user_attr("objectives", ["val_accuracy", "flops"])
    for pred, conf in rows:
        t = study.ask()
        if pred is not None:
            t.set_user_attr("predicted_val_accuracy", pred)
        study.tell(t, [conf, 1.0])
    return study


def test_predicted_vs_confirmed_data_and_rank_correlations():
    from nas_attn.viz.oneshot_view import predicted_figure, predicted_vs_confirmed

    d = predicted_vs_confirmed(_study_with([(0.5, 0.6), (0.4, 0.7), (0.3, 0.2), (None, 0.9)]))
    assert d.numbers == (0, 1, 2) and d.predicted == (0.5, 0.4, 0.3)
    assert d.confirmed == (0.6, 0.7, 0.2)
    # ranks (3, 2, 1) vs (2, 3, 1): rho = 1 - 6 * 2 / (3 * 8) = 0.5; tau = (2 - 1) / 3
    assert d.spearman == pytest.approx(0.5) and d.kendall == pytest.approx(1 / 3)
    assert "rho 0.500" in d.caption() and "tau 0.333" in d.caption()
    fig = predicted_figure(d)
    trials = [t for t in fig.data if t.meta == "trials"]
    assert len(trials) == 1 and list(trials[0].x) == [0.5, 0.4, 0.3]
    one = predicted_vs_confirmed(_study_with([(0.5, 0.6)]))
    assert one.spearman is None and one.kendall is None and "n/a" in one.caption()
    assert predicted_vs_confirmed(_study_with([(None, 0.6)])) is None  # not a one-shot run


def test_the_supernet_phase_trains_once_reuses_a_finished_checkpoint_refuses_another(
        tmp_path, monkeypatch):
    """Phase 1's decisions, without Ray (its trial replaced by writing an untrained
    supernet's checkpoint): no checkpoint or an unfinished one (no JSON) -> trained; a finished
    one -> reused; one of another recipe -> refused naming the difference."""
    from nas_attn.oneshot import build_supernet, save_supernet
    from nas_attn.oneshot.checkpoint import META, WEIGHTS
    from nas_attn.search import oneshot_run
    from nas_attn.search import storage as st
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import open_study

    data = copy.deepcopy(STUDY)
    data["oneshot"]["proposals"] = 2
    setup = setup_from_study_file(_write(tmp_path, data))
    study = open_study(st.open_storage(f"sqlite:///{tmp_path / 'study.db'}"), setup, None)
    trained = []

    def fake_train(setup_, ctx_, folder, rec):
        trained.append(dict(rec))
        folder.mkdir(parents=True, exist_ok=True)
        save_supernet(build_supernet(setup_.propose.space), folder, rec)

    monkeypatch.setattr(oneshot_run, "train_phase", fake_train)
    ctx = _Ctx(tmp_path)
    ctx.info["seed"] = 0
    (tmp_path / "run.json").write_text("{}")
    folder = tmp_path / oneshot_run.SUPERNET_DIR
    folder.mkdir()
    (folder / WEIGHTS).write_bytes(b"half-written")  # an unfinished checkpoint: no JSON
    _, fixed = oneshot_run.prepare_confirmation(setup, study, ctx)
    assert len(trained) == 1 and trained[0]["epochs"] == 1 and trained[0]["mode"] == "spos"
    assert ctx.info["oneshot"]["phase"] == "confirm" and ctx.info["requested_trials"] == 2
    assert fixed() is not None and fixed() is not None and fixed() is None  # the two picks
    oneshot_run.prepare_confirmation(setup, study, ctx)
    assert len(trained) == 1  # the finished checkpoint was reused
    meta = json.loads((folder / META).read_text())
    meta["recipe"]["epochs"] = 5
    (folder / META).write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as e:
        oneshot_run.prepare_confirmation(setup, study, ctx)
    assert e.value.field == "checkpoint.recipe.epochs" and e.value.value == 5
    assert list(e.value.choices) == [1]


# -- confirmation with several seeds (nas_attn/search/confirm_seeds.py) -----------------------


def test_mean_curve_averages_what_every_seed_reported():
    from nas_attn.search.confirm_seeds import mean_curve

    a = [{"val_accuracy": 0.5, "train_loss": 2.0, "gpu": "x"}, {"val_accuracy": 0.7}]
    b = [{"val_accuracy": 0.3, "train_loss": 1.0}, {"val_accuracy": 0.9, "val_loss": 1.0}]
    assert mean_curve([a, b]) == [{"train_loss": 1.5, "val_accuracy": 0.4},
                                  {"val_accuracy": pytest.approx(0.8)}]
    assert mean_curve([]) == []
    with pytest.raises(ValueError):  # seeds of different lengths are not averaged
        mean_curve([a, b[:1]])


def test_seeds_evaluator_reports_the_mean_keeps_each_seed_and_skips_finished_ones(
        tmp_path, monkeypatch):
    """Two seeds of a real (tiny) training: the reports are the per-epoch means, the last one
    carries each seed's accuracy; each seed keeps its weights and curve; a second call (a
    resumed run's trial) trains no finished seed, and only the seed whose record is gone."""
    from nas_attn.search import evaluators
    from nas_attn.search.confirm_seeds import PER_SEED, seed_record_name, train_seeds
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.oneshot_plan import OneShotSettings
    from nas_attn.search.oneshot_run import seeded
    from nas_attn.search.searcher import evaluator_attrs
    from nas_attn.search.trainable import TRIAL_KEY, checkpoint_name

    data = copy.deepcopy(STUDY)
    data["train"]["epochs"] = 2
    data["train"]["seed"] = 5
    data["data"].update(train_size=64, val_size=64, test_size=32)
    setup = setup_from_study_file(_write(tmp_path, data))
    assert seeded(setup, OneShotSettings(seeds=1)) == {}
    confirm = seeded(setup, OneShotSettings(seeds=2))
    assert confirm["evaluator"] == "nas_attn.search.confirm_seeds:train_seeds"
    settings = dict(confirm["evaluate_settings"])
    assert settings["confirm_seeds"] == {"evaluator": setup.evaluator, "seeds": [5, 6]}
    folder = tmp_path / "checkpoints"
    settings[TRIAL_KEY] = {"spec_hash": "h1", "checkpoint_dir": str(folder)}
    import random

    space = setup.propose.space
    spec = space.build(space.sample_params(random.Random(0))).to_dict()
    trained: list[int] = []
    original = evaluators.train_and_report

    def counting(spec_, settings_, report):
        trained.append(int(settings_["train"]["seed"]))
        original(spec_, settings_, report)

    monkeypatch.setattr(evaluators, "train_and_report", counting)
    reports: list[dict] = []
    train_seeds(spec, dict(settings), reports.append)
    assert trained == [5, 6] and len(reports) == 2
    curves = {s: json.loads((folder / seed_record_name("h1", s)).read_text())["curve"]
              for s in (5, 6)}
    for epoch in range(2):
        assert reports[epoch]["val_accuracy"] == pytest.approx(
            (curves[5][epoch]["val_accuracy"] + curves[6][epoch]["val_accuracy"]) / 2)
    attrs = evaluator_attrs(reports[-1])
    assert attrs["confirm_seeds"] == [5, 6]
    assert attrs[PER_SEED] == [curves[5][-1]["val_accuracy"], curves[6][-1]["val_accuracy"]]
    assert (folder / checkpoint_name("h1", 5)).is_file()
    assert (folder / checkpoint_name("h1", 6)).is_file()

    again: list[dict] = []
    train_seeds(spec, dict(settings), again.append)
    assert trained == [5, 6] and again == reports  # nothing trained, the same reports
    (folder / seed_record_name("h1", 6)).unlink()
    train_seeds(spec, dict(settings), again.append)
    assert trained == [5, 6, 6]


def test_a_reports_user_attrs_are_read_only_as_a_json_object():
    from nas_attn.search.searcher import evaluator_attrs

    assert evaluator_attrs({"user_attrs": '{"seed_val_accuracy": [0.5, 0.7]}'}) == {
        "seed_val_accuracy": [0.5, 0.7]}
    assert evaluator_attrs({"val_accuracy": 0.5}) == {}
    assert evaluator_attrs({"user_attrs": "not json"}) == {}
    assert evaluator_attrs({"user_attrs": "[1, 2]"}) == {}

"""The Ray execution layer shared by the search and the ablation runner: resources, packing of
GPU trials on logical GPUs, refusal of impossible requests, the searchers' common base."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from nas_attn.errors import ConfigError
from nas_attn.search import execution as ex
from nas_attn.search.setup import SearchOptions, synthetic_setup
from nas_attn.search.synthetic import SyntheticProblem
from nas_attn.search.trainable import trial_device


@pytest.mark.parametrize(("res", "cluster", "want"), [
    (ex.TrialResources(1, 0), {"CPU": 8, "GPU": 0}, 8),
    (ex.TrialResources(2, 0), {"CPU": 7}, 3),
    (ex.TrialResources(0.5, 0.25), {"CPU": 16, "GPU": 1}, 4),  # 4 to a GPU
    (ex.TrialResources(0.5, 0.25), {"CPU": 16, "GPU": 2}, 8),
    (ex.TrialResources(1, 0.25), {"CPU": 3, "GPU": 1}, 3),  # the CPUs bind first
    (ex.TrialResources(1, 0.3), {"CPU": 16, "GPU": 2}, 6),  # 3 to a GPU, never 6.67
    (ex.TrialResources(1, 1), {"CPU": 16, "GPU": 3}, 3),
    (ex.TrialResources(1, 2), {"CPU": 16, "GPU": 5}, 2),
    (ex.TrialResources(1, 0.25, limit=2), {"CPU": 16, "GPU": 1}, 2),  # the user's cap wins
])
def test_max_concurrent_from_cpus_and_gpus(res, cluster, want):
    assert ex.max_concurrent(res, cluster) == want


def test_trials_per_gpu():
    assert [ex.trials_per_gpu(g) for g in (0.25, 0.5, 0.1, 1 / 3, 0.3, 1, 2)] == \
        [4, 2, 10, 3, 3, 1, 1]
    with pytest.raises(ValueError):
        ex.trials_per_gpu(0)


def test_a_trial_asking_more_than_the_cluster_is_refused_with_both_numbers():
    with pytest.raises(ConfigError, match=r"asks for 2 GPU but the cluster has 1") as e:
        ex.check_resources(ex.TrialResources(1, 2), {"CPU": 4, "GPU": 1})
    assert e.value.field == "search.gpus_per_trial"
    with pytest.raises(ConfigError, match=r"asks for 0.25 GPU but the local runtime has 0"):
        ex.check_resources(ex.TrialResources(1, 0.25), {"CPU": 4}, "the local runtime")
    with pytest.raises(ConfigError, match=r"asks for 8 CPU but the cluster has 4") as e:
        ex.check_resources(ex.TrialResources(8, 0), {"CPU": 4, "GPU": 0})
    assert e.value.field == "search.cpus_per_trial"
    ex.check_resources(ex.TrialResources(4, 1), {"CPU": 4, "GPU": 1})  # exactly fits


def test_search_refused_before_anything_is_written(tmp_path):
    from nas_attn.search.runner import run_search

    setup = synthetic_setup(SyntheticProblem(choices=2, epochs=1), "refused",
                            SearchOptions(trials=1, gpus_per_trial=0.5))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"asks for 0\.5 GPU but the local runtime has 0"):
        run_search(setup, out=out, quiet=True, num_cpus=1, num_gpus=0)
    assert not out.exists()  # no folder, no run.json, no storage, Ray never started
    import ray

    assert not ray.is_initialized()


def test_ablation_refused_before_anything_is_written(tmp_path):
    from nas_attn.ablation.config import AblationConfig
    from nas_attn.ablation.run import run_ablation

    base = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
            "stages": [{"attention": {"type": "se"}}, None, None]}
    cfg = AblationConfig(name="t", base=base, design="loo", seeds=1, gpus_per_trial=2,
                         data={"name": "digits"}, train={"epochs": 1})
    with pytest.raises(ConfigError, match="asks for 2 GPU but the local runtime has 1"):
        run_ablation(cfg, out=tmp_path / "run", num_cpus=1, num_gpus=1)
    assert not (tmp_path / "run").exists()


def test_options_refuse_a_fractional_share_above_one_gpu_and_bad_memory():
    with pytest.raises(ConfigError, match="whole number") as e:
        SearchOptions(gpus_per_trial=1.5)
    assert e.value.field == "search.gpus_per_trial"
    with pytest.raises(ConfigError, match="must be > 0") as e:
        SearchOptions(gpu_memory_gb=0)
    assert e.value.field == "search.gpu_memory_gb"
    assert SearchOptions(gpus_per_trial=2, gpu_memory_gb=80).to_dict()["gpu_memory_gb"] == 80


def test_resources_record_and_request():
    res = ex.TrialResources(0.5, 0.25)
    assert res.request() == {"cpu": 0.5, "gpu": 0.25}
    rec = res.to_dict({"CPU": 2.0, "GPU": 1.0, "memory": 1e9})
    assert rec == {"cpus_per_trial": 0.5, "gpus_per_trial": 0.25, "max_concurrent": 4,
                   "cluster": {"CPU": 2.0, "GPU": 1.0}, "trials_per_gpu": 4}
    shaped = ex.TrialResources(1, 0.25, gpu_share=lambda c: c["share"]).request()
    pgf = shaped({"share": 0.5})
    assert pgf.bundles == [{"CPU": 1, "GPU": 0.5}]


def test_device_auto_follows_the_trials_share():
    assert trial_device("auto", 0) == "cpu"  # a CPU trial never takes a neighbour's GPU
    assert trial_device("auto", 0.0) == "cpu"
    assert trial_device("auto", 0.25) == "auto"  # CUDA where the worker sees its share
    assert trial_device("auto", None) == "auto"  # outside the runner: as asked
    assert trial_device("cuda", 0) == "cuda"  # an explicit device is the user's
    assert trial_device("cpu", 1) == "cpu"


@pytest.mark.parametrize(("gpus", "want"), [(0, "cpu"), (0.25, "auto")])
def test_the_evaluator_trains_on_the_device_of_its_share(monkeypatch, gpus, want):
    from nas_attn.search import evaluators

    seen = {}

    class Stop(Exception):
        pass

    def fake_train(spec, bundle, cfg, *a, **k):
        seen["device"] = cfg.device
        raise Stop

    monkeypatch.setattr("nas_attn.train.train_spec", fake_train)
    monkeypatch.setattr("nas_attn.search.evaluators.worker_cache", lambda key, f: None)
    settings = {"data": {"name": "digits"}, "train": {"epochs": 1, "device": "auto"},
                "gpus_per_trial": gpus, "cpus_per_trial": 1}
    with pytest.raises(Stop):
        evaluators.train_and_report({}, settings, lambda m: None)
    assert seen["device"] == want


def _study(tmp_path, directions=("maximize", "minimize")):
    import optuna

    return optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}",
                               directions=list(directions))


def test_searchers_share_one_base_for_pickling_and_open_trials(tmp_path):
    from nas_attn.ablation.run import JobSearcher
    from nas_attn.search.bookkeeping import TrialBookkeeping
    from nas_attn.search.searcher import AskTellSearcher

    problem = SyntheticProblem(choices=3, epochs=1)
    study = _study(tmp_path)
    ask = AskTellSearcher(study, problem.propose, synthetic_setup(problem).objectives, 1, 2,
                          "run1")
    job = JobSearcher(study, [], "run2", "val_accuracy", 1)
    for s, rid in ((ask, "run1"), (job, "run2")):
        assert isinstance(s, TrialBookkeeping)
        assert pickle.loads(pickle.dumps(s)).__dict__ == {"run_id": rid, "detached": True}
        path = tmp_path / f"{rid}.json"
        s.save(str(path))
        assert json.loads(path.read_text())["run_id"] == rid
        with pytest.raises(NotImplementedError, match="Optuna storage"):
            s.restore(str(path))
    assert ask.unfinished()  # 0 of 2 issued
    assert not job.unfinished()  # empty queue, nothing open
    config = ask.suggest("t1")
    assert config is not None and ask.issued == 1
    ask.record_attrs("t1", {"cuda_visible_devices": "0"})
    ask.record_attrs("unknown", {"x": 1})  # not an open trial: ignored
    trial = study.trials[-1]
    assert trial.user_attrs["cuda_visible_devices"] == "0"
    ask.flush(interrupted=True)  # the open trial becomes an orphan, not counted
    t = study.trials[-1]
    assert t.state.name == "FAIL" and t.user_attrs["fail_reason"] == "orphaned"
    assert t.user_attrs["counts"] is False


def test_ablation_metrics_skip_booleans(tmp_path):
    from nas_attn.ablation.run import Job, JobSearcher
    from nas_attn.search.outcome import Outcome

    study = _study(tmp_path, ["maximize"])
    job = Job(0, "base", 0, {"x": 1}, "h")
    s = JobSearcher(study, [job], "r", "val_accuracy", 1)
    s.suggest("t")
    s.on_trial_result("t", {"val_accuracy": 0.5, "val_loss": True, "train_loss": float("nan"),
                            "epoch": 1})
    s._finish(s._pending.pop("t"), Outcome("COMPLETE", (0.5,), {}))
    attrs = study.trials[-1].user_attrs
    assert attrs["val_accuracy"] == 0.5
    assert "val_loss" not in attrs and "train_loss" not in attrs


def test_ablation_yaml_is_written_atomically(tmp_path, monkeypatch):
    from nas_attn.ablation import run

    calls = []
    real = run.write_atomically
    monkeypatch.setattr(run, "write_atomically",
                        lambda path, write: calls.append(path) or real(path, write))
    run._write_yaml(tmp_path / "ablation.yaml", {"a": 1})
    assert calls == [tmp_path / "ablation.yaml"]
    assert (tmp_path / "ablation.yaml").read_text() == "a: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ablation.yaml"]  # no temporary left


# -- real Ray: logical GPUs, no device needed --------------------------------------------------


def _trials(run_dir, info_json="run.json"):
    import optuna

    info = json.loads((run_dir / info_json).read_text())
    return optuna.load_study(study_name=info["study_name"],
                             storage=f"sqlite:///{run_dir / 'study.db'}").trials


def _overlap(df) -> int:
    """The most trials that were running at one moment (from their start/complete times)."""
    events = sorted([(t, 1) for t in df["datetime_start"]] +
                    [(t, -1) for t in df["datetime_complete"]], key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


@pytest.mark.ray
@pytest.mark.slow
def test_quarter_gpu_trials_pack_four_to_a_logical_gpu(tmp_path):
    import nas_attn
    from nas_attn.search.run_dir import read_run
    from nas_attn.search.runner import run_search

    problem = SyntheticProblem(choices=8, epochs=2, epoch_seconds=0.6)
    setup = synthetic_setup(problem, "packed", SearchOptions(
        trials=8, sampler="grid", cpus_per_trial=0.25, gpus_per_trial=0.25))
    s = run_search(setup, out=tmp_path / "run", quiet=True, num_cpus=2, num_gpus=1)
    assert (s.status, s.finished) == ("finished", 8)
    info = read_run(tmp_path / "run")
    assert info["resources"] == {"cpus_per_trial": 0.25, "gpus_per_trial": 0.25,
                                 "max_concurrent": 4, "cluster": {"CPU": 2.0, "GPU": 1.0},
                                 "trials_per_gpu": 4}
    df = nas_attn.load_run(tmp_path / "run").trials
    devices = {t.user_attrs.get("cuda_visible_devices") for t in _trials(tmp_path / "run")}
    assert devices == {"0"}  # every trial got its quarter of GPU 0
    assert 2 <= _overlap(df) <= 4  # packed, never more than four on the GPU


@pytest.mark.ray
@pytest.mark.slow
def test_cpu_trials_get_no_gpu_and_ablation_records_its_resources(tmp_path):
    from nas_attn.ablation.config import AblationConfig
    from nas_attn.ablation.run import run_ablation

    base = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
            "stages": [{"attention": {"type": "se"}}, None, None]}
    data = {"name": "digits", "image_size": 8, "train_size": 64, "val_size": 32,
            "test_size": 32}
    cfg = AblationConfig(name="t", base=base, design="loo", seeds=1, data=data,
                         train={"epochs": 1, "batch_size": 32, "threads": 1},
                         cpus_per_trial=1, gpus_per_trial=0.5)
    s = run_ablation(cfg, out=tmp_path / "gpu", num_cpus=2, num_gpus=2, quiet=True)
    assert s.status == "finished" and s.complete == 2
    info = json.loads((tmp_path / "gpu" / "ablation.json").read_text())
    assert info["resources"]["trials_per_gpu"] == 2
    assert info["resources"]["max_concurrent"] == 2  # two jobs, two CPUs
    trials = _trials(tmp_path / "gpu", "ablation.json")
    assert {t.user_attrs["cuda_visible_devices"] for t in trials} <= {"0", "1"}
    assert all(t.user_attrs["cuda_visible_devices"] for t in trials)
    cpu = dataclasses.replace(cfg, name="c", gpus_per_trial=0.0)
    s = run_ablation(cpu, out=tmp_path / "cpu", num_cpus=2, num_gpus=1, quiet=True)
    assert s.complete == 2
    trials = _trials(tmp_path / "cpu", "ablation.json")
    assert {t.user_attrs["cuda_visible_devices"] for t in trials} == {""}

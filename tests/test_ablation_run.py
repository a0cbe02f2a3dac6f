"""Ablation runs: BASE parsing, job lists, and a small real ablation through Ray with resume."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from nas_attn.ablation.config import (
    AblationConfig,
    config_from_file,
    resolve_base,
)
from nas_attn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = {"backbone": "tiny", "num_classes": 10,
        "stages": [{"attention": {"type": "se"}}, {"attention": {"type": "eca"}}]}
DATA = {"name": "cluttered-digits", "image_size": 16, "train_size": 256, "val_size": 128,
        "test_size": 128}
TRAIN = {"epochs": 1, "batch_size": 32, "threads": 1}


def _write(path: Path, obj: object) -> Path:
    path.write_text(yaml.safe_dump(obj) if path.suffix != ".json" else json.dumps(obj))
    return path


# ---------------------------------------------------------------------------------------------
# BASE parsing (no training)


def test_base_from_spec_files_yaml_and_json(tmp_path):
    from nas_attn.arch import canonicalize

    want = canonicalize(BASE).to_dict()
    for name in ("b.yaml", "b.json"):
        src = resolve_base(_write(tmp_path / name, BASE))
        assert src.spec == want and src.source["kind"] == "spec"
        assert src.data is None and src.train is None


def test_base_from_bundle_folder_takes_card_data_and_training(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _write(bundle / "spec.yaml", BASE)
    (bundle / "card.json").write_text(json.dumps({
        "dataset": {"name": "cluttered-digits", "image_size": 16},
        "training": {"epochs": 3, "lr": 0.1, "not_a_train_field": 1}}))
    src = resolve_base(bundle)
    assert src.source == {"kind": "bundle", "path": str(bundle)}
    assert src.data == {"name": "cluttered-digits", "image_size": 16}
    assert src.train == {"epochs": 3, "lr": 0.1}


def _fake_search_run(run: Path) -> None:
    """A search run folder as the runner leaves it: run.json, study.yaml, an Optuna study."""
    import optuna

    from nas_attn.arch import canonicalize
    from nas_attn.search import storage as st

    run.mkdir()
    (run / "run.json").write_text(json.dumps({"study_name": "s", "run_id": "r1",
                                              "storage_in_run_dir": True,
                                              "objectives": [["val_accuracy", "maximize"],
                                                             ["flops", "minimize"]]}))
    _write(run / "study.yaml", {"data": DATA, "train": {**TRAIN, "seed": 7}})
    study = optuna.create_study(study_name="s", storage=st.open_storage(st.default_url(run)),
                                directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["val_accuracy", "flops"])
    spec = json.dumps(canonicalize(BASE).to_dict(), sort_keys=True)
    t = study.ask()
    t.set_user_attr("spec", spec)
    study.tell(t, [0.5, 1e6])
    t = study.ask()
    t.set_user_attr("spec", spec)
    study.tell(t, state=optuna.trial.TrialState.FAIL)


def test_base_from_run_folder_with_trial(tmp_path):
    from nas_attn.arch import canonicalize

    run = tmp_path / "run"
    _fake_search_run(run)
    src = resolve_base(run, trial=0)
    assert src.spec == canonicalize(BASE).to_dict()
    assert src.source["kind"] == "run" and src.source["trial"] == 0
    assert src.data == DATA and src.train["epochs"] == 1
    with pytest.raises(ConfigError, match="say which trial") as e:
        resolve_base(run)
    assert e.value.choices == [0]  # the COMPLETE trials
    with pytest.raises(ConfigError, match="no trial with a spec") as e:
        resolve_base(run, trial=9)
    assert e.value.field == "--trial" and e.value.choices == [0, 1]


def test_base_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        resolve_base(tmp_path / "missing.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither an export bundle"):
        resolve_base(tmp_path / "empty")
    spec = _write(tmp_path / "b.yaml", BASE)
    with pytest.raises(ConfigError, match="only for a search run folder"):
        resolve_base(spec, trial=3)
    with pytest.raises(ConfigError, match="not an architecture spec"):
        resolve_base(_write(tmp_path / "x.yaml", {"name": "no backbone"}))
    with pytest.raises(ConfigError, match="tiny"):  # a spec that cannot be built
        resolve_base(_write(tmp_path / "bad.yaml", {**BASE, "backbone": "tinyy"}))


# ---------------------------------------------------------------------------------------------
# configs and job lists (no training)


def test_parse_seeds():
    from nas_attn.config import parse_seeds

    assert parse_seeds(2, first=5) == (5, 6)
    assert parse_seeds(3) == (0, 1, 2)
    assert parse_seeds("2") == (0, 1)
    assert parse_seeds("0,3,7") == (0, 3, 7)
    assert parse_seeds([5, 1]) == (5, 1)
    for bad in (0, "x", [1, 1], [-1], [], True):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_parse_factor_args():
    from nas_attn.cli.ablate import parse_factor_args

    assert parse_factor_args([]) is None
    assert parse_factor_args(["stage1.attention"]) == ["stage1.attention"]
    assert parse_factor_args(["all.position=pre,post_add", "stage0.attention"]) == {
        "all.position": ["pre", "post_add"], "stage0.attention": None}
    assert parse_factor_args(["stage0.attention.rd_ratio=[0.125, 0.25]"]) == {
        "stage0.attention.rd_ratio": [0.125, 0.25]}
    with pytest.raises(ConfigError, match="given twice"):
        parse_factor_args(["a", "a"])


def _cfg(**kw) -> AblationConfig:
    return AblationConfig(**{"name": "t", "base": BASE, "design": "loo", "seeds": 2,
                             "data": DATA, "train": TRAIN, **kw})


@pytest.mark.parametrize(("kw", "arms"), [
    ({"design": "loo"}, 3),
    ({"design": "loo", "include_plain": True}, 4),
    ({"design": "ofat", "factors": {"stage0.attention": ["eca", "none"]}}, 3),
    ({"design": "factorial", "factors": {"stage0.attention": ["se", "none"],
                                         "stage1.attention": ["eca", "none"]}}, 4),
    ({"design": "swap", "modules": ["cbam", "eca"]}, 3),
])
def test_designs_give_arms_times_seeds_jobs_seed_major(kw, arms):
    from nas_attn.ablation.run import make_jobs

    cfg = _cfg(seeds=[4, 2, 9], **kw)
    design = cfg.make_design()
    jobs = make_jobs(design, cfg.seeds)
    assert len(design.arms) == arms and len(jobs) == arms * 3
    assert [j.job for j in jobs] == list(range(len(jobs)))
    assert [j.seed for j in jobs] == [s for s in (4, 2, 9) for _ in range(arms)]
    assert len({j.key for j in jobs}) == len(jobs)
    for a in design.arms:  # every arm trains with every seed, the same network each time
        mine = [j for j in jobs if j.arm == a.name]
        assert sorted(j.seed for j in mine) == [2, 4, 9]
        assert {j.spec_hash for j in mine} == {a.hash}


@pytest.mark.parametrize(("path", "arms", "skipped"), [
    ("studies/ablations/se_integration.yaml", 5, 0),
    ("studies/ablations/ela_mobilenetv2.yaml", 5, 1),  # ELA-T cannot be built at 144 channels
])
def test_shipped_ablation_studies(path, arms, skipped):
    from nas_attn.ablation.run import make_jobs

    cfg = config_from_file(ROOT / path)
    design = cfg.make_design()
    assert len(design.arms) == arms and len(design.skipped) == skipped
    assert len(make_jobs(design, cfg.seeds)) == arms * 5
    assert cfg.data["name"] == "cifar10" and cfg.report == "val"
    over = config_from_file(ROOT / path, {"seeds": 2, "train": {"epochs": 3}})
    assert over.seeds == (0, 1) and over.train["epochs"] == 3
    assert over.train["batch_size"] == cfg.train["batch_size"]


def test_config_errors():
    with pytest.raises(ConfigError, match="needs factors"):
        _cfg(design="ofat")
    with pytest.raises(ConfigError, match="unknown design"):
        _cfg(design="anova")
    with pytest.raises(ConfigError, match="not used by the loo"):
        _cfg(factors=["stage0.attention"])
    with pytest.raises(ConfigError, match="classes differ"):
        _cfg(base={**BASE, "num_classes": 100})
    with pytest.raises(ConfigError, match="unknown metric"):
        _cfg(report="train")
    cfg = _cfg()
    assert "seed" not in cfg.train  # every job sets its own
    assert AblationConfig.from_dict(cfg.to_dict()) == cfg


def test_cli_bad_base_exits_2(tmp_path, capsys):
    from nas_attn.cli import main

    assert main(["ablate", str(tmp_path / "nope.yaml"), "--design", "loo"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    spec = _write(tmp_path / "b.yaml", BASE)
    assert main(["ablate", str(spec)]) == 2
    assert "--design" in capsys.readouterr().err


def test_test_evaluator_reports_test_accuracy_with_the_last_epoch():
    from nas_attn.ablation.run import train_and_report_test
    from nas_attn.train import train_spec

    reports: list[dict] = []
    train_and_report_test(BASE, {"data": DATA, "train": {**TRAIN, "epochs": 2, "seed": 3}},
                          reports.append)
    assert len(reports) == 2 and "test_accuracy" not in reports[0]
    direct = train_spec(BASE, DATA, {**TRAIN, "epochs": 2, "seed": 3}, evaluate_test=True)
    assert reports[-1]["test_accuracy"] == direct.test_accuracy
    assert reports[-1]["val_loss"] == direct.epochs[-1].val_loss


# ---------------------------------------------------------------------------------------------
# a real ablation through Ray: 3 arms x 2 seeds


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
    from nas_attn.cli import main

    tmp = tmp_path_factory.mktemp("ablation")
    spec = _write(tmp / "base.yaml", BASE)
    out = tmp / "run"
    args = ["ablate", str(spec), "--design", "loo", "--seeds", "2", "--data", DATA["name"],
            *[a for k in ("image_size", "train_size", "val_size", "test_size")
              for a in ("-D", f"{k}={DATA[k]}")],
            "--epochs", "1", "--batch-size", "32", "-T", "threads=1", "--num-cpus", "2",
            "--max-concurrent", "2", "--out", str(out)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(args)
    return out, rc, stdout.getvalue()


@pytest.mark.ray
@pytest.mark.slow
def test_ablation_runs_every_job_and_writes_the_outputs(ablation_run):
    import nas_attn
    from nas_attn.ablation.stats import analyze

    out, rc, printed = ablation_run
    assert rc == 0
    jobs = nas_attn.load_ablation(out)
    assert len(jobs) == 6 and set(jobs["state"]) == {"COMPLETE"}
    assert sorted(zip(jobs["arm"], jobs["seed"], strict=True)) == sorted(
        (a, s) for a in ("base", "loo:stage0.attention", "loo:stage1.attention") for s in (0, 1))
    assert jobs["val_accuracy"].between(0, 1).all() and jobs["val_loss"].notna().all()
    assert jobs["test_accuracy"].isna().all()  # validation by default
    assert (jobs["flops"] > 0).all() and jobs.groupby("arm")["spec_hash"].nunique().eq(1).all()
    assert jobs.attrs["ablation"]["design"] == "loo"
    # the results table from the storage
    results = analyze(jobs, metric="val_accuracy",
                      descriptions=dict(zip(jobs["arm"], jobs["description"], strict=True)))
    import pandas as pd

    csv = pd.read_csv(out / "results.csv")
    assert list(csv["arm"]) == list(results["arm"]) == [
        "base", "loo:stage0.attention", "loo:stage1.attention"]
    for col in ("mean", "ci_low", "diff_mean", "diff_ci_low", "p_holm", "wilcoxon_p_holm",
                "d_z", "flops_delta_pct", "seeds_needed", "verdict", "n", "n_paired"):
        assert col in csv.columns
    assert list(csv["n"]) == [2, 2, 2]
    assert csv["diff_mean"].iloc[1:].tolist() == pytest.approx(results["diff_mean"].iloc[1:])
    # verdicts: printed, in results.md, in the HTML page (plotly.js embedded once)
    verdicts = list(csv["verdict"])
    assert verdicts[1].startswith("without SE at stage 0: ") and " pp " in verdicts[1]
    assert verdicts[2].startswith("without ECA at stage 1: ")
    for v in verdicts:
        assert v in printed
        assert v in (out / "results.md").read_text()
    page = (out / "plots.html").read_text()
    assert page.count("<script") >= 2 and page.count("plotly.js v") == 1
    assert "Paired difference vs base" in page
    conf = yaml.safe_load((out / "ablation.yaml").read_text())
    assert conf["seeds"] == [0, 1] and conf["data"]["train_size"] == 256
    assert [a["name"] for a in conf["arms"]] == list(csv["arm"])
    assert json.loads((out / "ablation.json").read_text())["status"] == "finished"


@pytest.mark.ray
@pytest.mark.slow
def test_same_seed_same_init_and_data_order(ablation_run):
    """Each job trained its arm with TrainConfig(seed=s): the result equals an in-process
    training with that seed, and the two seeds differ."""
    import nas_attn
    from nas_attn.train import train_spec

    out, _, _ = ablation_run
    jobs = nas_attn.load_ablation(out)
    base = jobs[jobs["arm"] == "base"].set_index("seed")
    for seed in (0, 1):
        direct = train_spec(BASE, DATA, {**TRAIN, "seed": seed})
        assert base.loc[seed, "val_loss"] == direct.epochs[-1].val_loss
        assert base.loc[seed, "val_accuracy"] == direct.val_accuracy
    assert base.loc[0, "val_loss"] != base.loc[1, "val_loss"]


def _orphan_and_forget(db: Path, orphan_job: int, forget_job: int) -> None:
    """What a ``kill -9`` of the driver leaves: one job's trial RUNNING, another job never
    started (its trial belongs to no run of this folder)."""
    con = sqlite3.connect(db)
    try:
        def trial_of(job: int) -> int:
            return con.execute("SELECT trial_id FROM trial_user_attributes WHERE key='job' AND "
                               "value_json=?", (json.dumps(job),)).fetchone()[0]

        t = trial_of(orphan_job)
        con.execute("UPDATE trials SET state='RUNNING', datetime_complete=NULL WHERE "
                    "trial_id=?", (t,))
        con.execute("DELETE FROM trial_values WHERE trial_id=?", (t,))
        con.execute("UPDATE trial_user_attributes SET value_json=? WHERE trial_id=? AND "
                    "key='run_id'", (json.dumps("another-run"), trial_of(forget_job)))
        con.commit()
    finally:
        con.close()


@pytest.mark.ray
@pytest.mark.slow
def test_resume_skips_finished_jobs_and_retrains_orphans(ablation_run, tmp_path):
    import nas_attn
    from nas_attn.ablation.run import resume_ablation

    out, _, _ = ablation_run
    before = nas_attn.load_ablation(out).set_index("job")
    run = tmp_path / "copy"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("ray"))
    _orphan_and_forget(run / "study.db", orphan_job=3, forget_job=5)  # base seed 1, loo1 seed 1
    s = resume_ablation(run, num_cpus=2, quiet=True)
    assert (s.status, s.jobs, s.complete, s.skipped) == ("finished", 6, 6, 4)
    after = nas_attn.load_ablation(run).set_index("job")
    assert set(after["state"]) == {"COMPLETE"} and len(after) == 6
    # finished jobs were kept (same Optuna trials), the two others trained again
    kept = [0, 1, 2, 4]
    assert list(after.loc[kept, "number"]) == list(before.loc[kept, "number"])
    assert set(after.loc[[3, 5], "number"]) == {6, 7}
    # the base arm trained twice with the same seed gives the same result
    assert after.loc[3, "val_loss"] == before.loc[3, "val_loss"]
    assert after.loc[5, "val_loss"] == before.loc[5, "val_loss"]
    import optuna

    study = optuna.load_study(study_name=json.loads((run / "ablation.json").read_text())
                              ["study_name"], storage=f"sqlite:///{run / 'study.db'}")
    orphaned = [t for t in study.trials if t.user_attrs.get("fail_reason") == "orphaned"]
    assert [t.user_attrs["job"] for t in orphaned] == [3]
    again = resume_ablation(run, num_cpus=2, quiet=True)  # nothing left: no Ray at all
    assert (again.skipped, again.complete) == (6, 6)
    from nas_attn.cli import main  # one way to resume: the same command as for a search

    assert main(["resume", str(run), "--num-cpus", "2", "-q"]) == 0
    assert list(nas_attn.load_ablation(run).set_index("job")["number"]) == list(after["number"])
    assert main(["resume", str(run), "--retry-failed", "-q"]) == 0
    assert main(["resume", str(tmp_path), "--retry-failed"]) == 2  # not an ablation folder
    with pytest.raises(ConfigError, match="nas-attn resume"):  # an ablation folder is no BASE
        resolve_base(run)
    with pytest.raises(ConfigError, match="already holds an ablation"):
        from nas_attn.ablation.run import run_ablation

        run_ablation(_cfg(), out=run)

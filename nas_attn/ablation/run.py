"""Train an ablation's arms through the search runner's Ray machinery, resumably.

Jobs = arms x seeds (:func:`make_jobs`, seed-major: an interrupted ablation has whole seeds
done, which is what paired statistics need). Every job trains its arm with
``TrainConfig(seed=s)``; ``train_spec`` seeds the initialisation (``torch.manual_seed``) and
the data order and augmentation (its own generator) from that one seed, so every arm sees the
same initial random stream, batches and augmentation per seed: a paired design.

Execution is the search's (:mod:`nas_attn.search.execution`): one Ray Tune ``Tuner`` with
``reuse_actors=True`` runs the runner's trainable (:func:`nas_attn.search.trainable.run_trial`,
so the dataset stays resident in each worker and bad results become typed failures) with the search's default evaluator
(:func:`nas_attn.search.evaluators.train_and_report`; :func:`train_and_report_test` when the
test accuracy is reported). Proposals come from :class:`JobSearcher`, a Ray ``Searcher`` that
hands out the fixed job list and records each job as one Optuna trial (user attrs ``job``,
``arm``, ``seed``, ``spec_hash``, the metrics; COMPLETE, or FAIL with ``fail_reason``) in the
SQLite storage ``study.db`` of the run folder.

Resume (``nas-attn resume RUN_DIR``): this run's trials still RUNNING (their driver
died) become FAIL ``orphaned`` (the runner's :func:`~nas_attn.search.runner.reconcile`); jobs
with a COMPLETE trial, or a FAIL after training (a deterministic failure would fail again), are
skipped; the rest run. Failed jobs are retried with ``retry_failed=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from nas_attn.ablation.config import ABLATION_JSON, ABLATION_YAML, read_config
from nas_attn.errors import ConfigError
from nas_attn.files import write_atomically
from nas_attn.objectives import Objective, is_finite_number, name_metrics
from nas_attn.search.bookkeeping import TrialBookkeeping
from nas_attn.search.outcome import COMPLETE, FAIL, Outcome
from nas_attn.search.ownership import ask_owned

if TYPE_CHECKING:
    from nas_attn.ablation.config import AblationConfig
    from nas_attn.ablation.designs import Design

log = logging.getLogger(__name__)

VAL_EVALUATOR = "nas_attn.search.evaluators:train_and_report"
TEST_EVALUATOR = "nas_attn.ablation.run:train_and_report_test"
FINGERPRINT_ATTR = "ablation_fingerprint"
_METRIC_ATTRS = ("val_accuracy", "test_accuracy", "val_loss", "train_loss", "images_per_s",
                 "gpu_peak_mb")


@dataclass(frozen=True)
class Job:
    """One training run: ``arm`` with ``seed``."""

    job: int
    arm: str
    seed: int
    spec: Mapping[str, Any]
    spec_hash: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.arm, self.seed)


def make_jobs(design: Design, seeds: Sequence[int]) -> list[Job]:
    """Arms x seeds, seed-major (every arm with the first seed, then the next seed...)."""
    return [Job(i * len(design.arms) + j, a.name, int(s), a.spec.to_dict(), a.hash)
            for i, s in enumerate(seeds) for j, a in enumerate(design.arms)]


def fingerprint(cfg: AblationConfig, jobs: Sequence[Job]) -> str:
    """What makes two executions of an ablation the same: jobs, data, training, metric."""
    blob = json.dumps({"jobs": [[j.arm, j.seed, j.spec_hash] for j in jobs],
                       "data": cfg.data, "train": cfg.train, "metric": cfg.metric},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def arm_costs(design: Design, input_size: Sequence[int]) -> dict[str, dict[str, float]]:
    """Params and FLOPs per arm (computed in the driver, before training)."""
    from nas_attn.cost import profile

    out: dict[str, dict[str, float]] = {}
    for a in design.arms:
        try:
            p = profile(a.spec, input_size=tuple(input_size))
        except Exception as e:  # costs are informative; an ablation can run without them
            log.warning("could not profile arm %s: %s", a.name, e)
            continue
        out[a.name] = {"flops": float(p.flops), "params": float(p.params)}
    return out


# ---------------------------------------------------------------------------------------------
# worker side


def run_job(config: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Ray function trainable: the runner's :func:`run_trial` with the job's training seed."""
    from nas_attn.search.trainable import run_trial

    evaluate = dict(settings["evaluate"])
    evaluate["train"] = {**dict(evaluate["train"]), "seed": int(config["seed"])}
    run_trial(config, {**settings, "evaluate": evaluate})


def train_and_report_test(spec: dict, settings: dict,
                          report_epoch: Callable[[Mapping[str, Any]], None]) -> None:
    """The search's ``train_and_report`` (same worker cache, so the same resident data) with
    ``evaluate_test``: the last epoch's report also carries ``test_accuracy``."""
    from nas_attn.search.evaluators import train_and_report

    train_and_report(spec, {**settings, "evaluate_test": True}, report_epoch)


# ---------------------------------------------------------------------------------------------
# driver side: the searcher


@dataclass
class _Pending:
    trial: Any  # optuna.Trial
    job: Job
    started: float
    last_result: Mapping[str, Any] | None = None


class JobSearcher(TrialBookkeeping):
    """Ray Tune searcher that hands out a fixed list of jobs and records each in Optuna.

    ``suggest`` asks the study for a trial (RUNNING, with the job's user attrs) and returns the
    job's config; ``on_trial_complete`` (and ``resolve_error``, called by the runner's error
    relay with the failure reason) tells it COMPLETE with the metric or FAIL with the reason.
    Never raises into Ray.
    """

    def __init__(self, study: Any, jobs: Sequence[Job], run_id: str, metric: str, epochs: int,
                 costs: Mapping[str, Mapping[str, float]] | None = None,
                 on_event: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        super().__init__(on_event)
        self.study = study
        self.queue = list(jobs)
        self.run_id = run_id
        self.objectives = (Objective(metric, "maximize"),)
        self.epochs = epochs
        self.costs = dict(costs or {})
        self.finished: list[tuple[Job, str]] = []

    def unfinished(self) -> bool:
        return bool(self.queue) or super().unfinished()

    # -- Ray Searcher API ---------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.queue:
            return Searcher.FINISHED
        job = self.queue.pop(0)
        trial = ask_owned(self.study, self.run_id)  # owned from the moment it is asked
        costs = dict(self.costs.get(job.arm, {}))
        attrs = {"run_id": self.run_id, "job": job.job, "arm": job.arm, "seed": job.seed,
                 "spec_hash": job.spec_hash, "spec": json.dumps(dict(job.spec), sort_keys=True),
                 **costs}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self._pending[trial_id] = _Pending(trial, job, time.time())
        self.issued += 1
        self._emit("start", {"job": job.job, "arm": job.arm, "seed": job.seed})
        return {"job": job.job, "arm": job.arm, "seed": job.seed, "spec_hash": job.spec_hash,
                "spec": attrs["spec"], "costs": costs}

    # -- internals ----------------------------------------------------------------------------

    def _finish(self, p: _Pending, out: Outcome) -> None:
        attrs = dict(out.attrs)
        attrs.setdefault("counts", True)
        attrs["train_seconds"] = round(time.time() - p.started, 3)
        for k in _METRIC_ATTRS:
            v = (p.last_result or {}).get(k)
            if is_finite_number(v):
                attrs[k] = float(v)
        for k, v in attrs.items():
            p.trial.set_user_attr(k, v)
        try:
            if out.state == COMPLETE:
                self.study.tell(p.trial, list(out.values or ()))
            else:
                from optuna.trial import TrialState

                self.study.tell(p.trial, state=TrialState.FAIL)
        except Exception:  # never let a storage hiccup abort the ablation
            log.exception("could not tell Optuna trial %s", p.trial.number)
        self.finished.append((p.job, out.state))
        self._emit("finish", {"job": p.job.job, "arm": p.job.arm, "seed": p.job.seed,
                              "state": out.state, "values": out.values,
                              "reason": attrs.get("fail_reason"),
                              "seconds": attrs["train_seconds"]})


# ---------------------------------------------------------------------------------------------
# driver side: the run


@dataclass(frozen=True)
class AblationSummary:
    run_dir: Path
    status: str  # "finished" | "interrupted"
    jobs: int
    complete: int
    failed: int
    skipped: int  # already finished before this execution (resume)
    verdicts: tuple[str, ...]
    message: str = ""


def finished_jobs(study: Any, run_id: str, retry_failed: bool = False) -> dict[int, str]:
    """job id -> state of this run's finished jobs (COMPLETE, or FAIL after training unless
    ``retry_failed``); orphans and other runs' trials do not count."""
    from optuna.trial import TrialState

    out: dict[int, str] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("run_id") != run_id or "job" not in t.user_attrs:
            continue
        job = int(t.user_attrs["job"])
        if t.state == TrialState.COMPLETE:
            out[job] = COMPLETE
        elif (t.state == TrialState.FAIL and t.user_attrs.get("counts") and not retry_failed
              and out.get(job) != COMPLETE):
            out[job] = FAIL
    return out


def _open_study(run_dir: Path, name: str, fp: str, metric: str) -> Any:
    import optuna

    from nas_attn.search import storage as st

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = st.open_storage(st.default_url(run_dir))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
        study.set_user_attr(FINGERPRINT_ATTR, fp)
        study.set_user_attr("objectives", [metric])
        study.set_user_attr("kind", "ablation")
        name_metrics(study, (Objective(metric, "maximize"),))
        return study
    if study.user_attrs.get(FINGERPRINT_ATTR) != fp:
        raise ConfigError("RUN_DIR", str(run_dir), "the ablation in this folder was made with "
                          "other jobs, data, training or metric (fingerprint "
                          f"{study.user_attrs.get(FINGERPRINT_ATTR)} != {fp}); start a new run "
                          "folder")
    name_metrics(study, (Objective(metric, "maximize"),))  # a study made before it was named
    return study


def _yaml_doc(cfg: AblationConfig, design: Design, jobs: Sequence[Job],
              costs: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    arms = [{"name": a.name, "description": a.description, "factor": a.factor,
             "level": list(a.level) if isinstance(a.level, tuple) else a.level,
             "spec_hash": a.hash, **dict(costs.get(a.name, {}))} for a in design.arms]
    return {**cfg.to_dict(), "arms": arms, "jobs": len(jobs),
            "skipped": [list(s) for s in design.skipped], "notes": list(design.notes)}


def run_ablation(cfg: AblationConfig, out: Path | None = None, address: str | None = None,
                 num_cpus: int | None = None, quiet: bool = False, console: Any = None,
                 num_gpus: float | None = None) -> AblationSummary:
    """Start a new ablation run in ``out`` (default ``runs/<name>-<timestamp>``); a local
    runtime gets ``num_cpus`` CPUs and ``num_gpus`` (logical) GPUs."""
    from nas_attn.search import execution as ex
    from nas_attn.search import run_dir as rd
    from nas_attn.search import storage as st

    run_dir = Path(out) if out else rd.default_run_dir(cfg.name)
    if (run_dir / ABLATION_JSON).exists():
        raise ConfigError("--out", str(run_dir), "already holds an ablation; finish it with "
                          f"nas-attn resume {run_dir}, or pick another folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError("--out", str(run_dir), "exists and is not empty")
    ex.preflight(resources(cfg), address, num_cpus, num_gpus)  # before anything is written
    design = cfg.make_design()
    jobs = make_jobs(design, cfg.seeds)
    costs = arm_costs(design, cfg.input_size())
    run_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg, jobs)
    info = {"kind": "ablation", "study_name": cfg.name, "run_id": uuid.uuid4().hex[:12],
            "storage": st.default_url(run_dir), "storage_in_run_dir": True,
            "design": cfg.design, "arms": len(design.arms), "seeds": list(cfg.seeds),
            "jobs": len(jobs), "metric": cfg.metric, "fingerprint": fp,
            "versions": rd.versions(), "status": "running",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rd.write_json(run_dir / ABLATION_JSON, info)
    _write_yaml(run_dir / ABLATION_YAML, _yaml_doc(cfg, design, jobs, costs))
    study = _open_study(run_dir, cfg.name, fp, cfg.metric)
    return _run(cfg, design, jobs, costs, study, run_dir, info, address, num_cpus, quiet,
                console, retry_failed=False, num_gpus=num_gpus)


def resume_ablation(run_dir: Path, address: str | None = None, num_cpus: int | None = None,
                    quiet: bool = False, console: Any = None, retry_failed: bool = False,
                    num_gpus: float | None = None) -> AblationSummary:
    """Finish an interrupted ablation from its folder (finished jobs are skipped)."""

    run_dir = Path(run_dir)
    info_path = run_dir / ABLATION_JSON
    if not info_path.exists():
        raise ConfigError("RUN_DIR", str(run_dir), f"not an ablation run folder (no "
                          f"{ABLATION_JSON})")
    info = json.loads(info_path.read_text())
    cfg = read_config(run_dir)
    design = cfg.make_design()
    jobs = make_jobs(design, cfg.seeds)
    costs = arm_costs(design, cfg.input_size())
    study = _open_study(run_dir, info["study_name"], fingerprint(cfg, jobs), cfg.metric)
    return _run(cfg, design, jobs, costs, study, run_dir, info, address, num_cpus, quiet,
                console, retry_failed=retry_failed, num_gpus=num_gpus)


def _write_yaml(path: Path, doc: Mapping[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _progress(console: Any, total: int, done: int) -> Callable[[str, Mapping[str, Any]], None]:
    state = {"done": done}

    def event(kind: str, d: Mapping[str, Any]) -> None:
        if kind != "finish" or console is None:
            return
        state["done"] += 1
        what = (f"{d['values'][0]:.4f}" if d["state"] == COMPLETE and d["values"]
                else f"FAIL {d['reason']}")
        console.print(f"[{state['done']}/{total}] {d['arm']} seed {d['seed']}: {what} "
                      f"({d['seconds']:.1f} s)", highlight=False, soft_wrap=True)

    return event


def _execute(cfg: AblationConfig, todo: Sequence[Job], costs: Mapping[str, Any], study: Any,
             run_dir: Path, run_id: str, on_event: Any,
             info: dict[str, Any] | None = None) -> tuple[JobSearcher, bool]:
    from nas_attn.search import execution as ex

    searcher = JobSearcher(study, todo, run_id, cfg.metric, cfg.epochs, costs, on_event)
    share = {"cpus_per_trial": cfg.cpus_per_trial, "gpus_per_trial": cfg.gpus_per_trial}
    settings = {"evaluator": TEST_EVALUATOR if cfg.report == "test" else VAL_EVALUATOR,
                "epochs": cfg.epochs, **share,
                "checkpoint_dir": None,  # no weights kept: an ablation measures, exports nothing
                "evaluate": {"data": dict(cfg.data), "train": dict(cfg.train), **share}}

    def record(resources: dict[str, Any]) -> None:
        if info is not None:
            from nas_attn.search import run_dir as rd

            info["resources"] = resources
            rd.write_json(run_dir / ABLATION_JSON, info)

    interrupted = ex.run_segment(run_job, settings, searcher, run_dir, resources(cfg),
                                 jobs=len(todo), on_resources=record)
    return searcher, interrupted


def resources(cfg: AblationConfig) -> Any:
    """What one job asks Ray for (:class:`nas_attn.search.execution.TrialResources`)."""
    from nas_attn.search import execution as ex

    return ex.TrialResources(cfg.cpus_per_trial, cfg.gpus_per_trial, cfg.max_concurrent)


def _run(cfg: AblationConfig, design: Design, jobs: Sequence[Job],
         costs: Mapping[str, Mapping[str, float]], study: Any, run_dir: Path,
         info: dict[str, Any], address: str | None, num_cpus: int | None, quiet: bool,
         console: Any, retry_failed: bool, num_gpus: float | None = None) -> AblationSummary:
    from nas_attn.ablation.outputs import write_outputs
    from nas_attn.search import execution as ex
    from nas_attn.search import run_dir as rd
    from nas_attn.search.runner import reconcile

    run_id = info["run_id"]
    reconcile(study, run_id)
    done = finished_jobs(study, run_id, retry_failed)
    todo = [j for j in jobs if j.job not in done]
    status = "finished"
    if not quiet and console is not None and done:
        console.print(f"{len(done)} of {len(jobs)} jobs already finished; running "
                      f"{len(todo)}", highlight=False)
    try:
        if todo:
            with ex.ray_runtime(address, num_cpus, num_gpus):
                on_event = _progress(None if quiet else console, len(jobs), len(done))
                _, interrupted = _execute(cfg, todo, costs, study, run_dir, run_id, on_event,
                                          info)
            if interrupted:
                status = "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
    except ConfigError:  # refused before any job (a cluster without the resources asked)
        status = "refused"
        raise
    finally:
        rd.write_ended(run_dir / ABLATION_JSON, info, status)
    report = write_outputs(run_dir, cfg, design, study, run_id)
    now = finished_jobs(study, run_id)
    return AblationSummary(
        run_dir, status, len(jobs), sum(s == COMPLETE for s in now.values()),
        sum(s == FAIL for s in now.values()), len(done), tuple(report.verdicts), report.message)

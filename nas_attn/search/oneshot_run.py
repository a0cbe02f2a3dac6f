"""The one-shot pipeline of a run (``evaluator: supernet``, ``nas-attn search --one-shot``).

Three phases, all in the run folder, each resumable after ``kill -9``:

1. **supernet**: the supernet of the study's space trained once, as one Ray trial through the
   search's execution layer (:func:`nas_attn.search.execution.run_segment`, the
   :func:`supernet_trial` trainable), with the study's recipe and ``oneshot.epochs``;
   checkpointed in ``RUN_DIR/supernet/`` (:func:`nas_attn.oneshot.save_supernet`), its
   progress kept after every epoch (``progress.pt``). A resume reuses a finished checkpoint
   (its JSON is written last), refuses a checkpoint or progress of another space or recipe
   (naming the difference), and resumes an unfinished training after its last kept epoch.
2. **search**: on the driver, Optuna (the study's sampler and objectives) proposes
   ``oneshot.proposals`` architectures; each is scored against the supernet (inherited
   weights, BatchNorm recalibrated, validation accuracy) and its costs come from the cost model
   as for any proposal. Every prediction is a trial of a second study in the same storage,
   ``<study>:predicted``, told as it is made, so a resume scores only what is missing; a
   duplicate is not scored again.
3. **confirm**: the top K of the predicted front (:func:`~nas_attn.search.oneshot_plan.
   pick_confirmations`) become the run's requested trials: the normal searcher asks the run's
   study for each with its parameters fixed, so every confirmation is a real trial trained
   stand-alone with the study's recipe (early stopping off: K trials are not a population
   to halve), carrying its predictions as user attrs ``predicted_<objective>`` and
   ``predicted_number``; with ``oneshot.seeds`` K > 1 each trial trains it with K seeds and
   reports the mean (:mod:`nas_attn.search.confirm_seeds`). The run's front is the confirmed
   one.

The runner calls :func:`prepare_confirmation` before its segment; phase 3 is the runner's own
segment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from nas_attn.errors import ConfigError, TrialError
from nas_attn.objectives import ACCURACY
from nas_attn.search import run_dir as rd
from nas_attn.search.bookkeeping import TrialBookkeeping
from nas_attn.search.oneshot_plan import (
    OneShotSettings,
    Prediction,
    pick_confirmations,
    still_to_confirm,
)
from nas_attn.search.ownership import ask_owned, reconcile

SUPERNET_DIR = "supernet"
PREDICTED_SUFFIX = ":predicted"
PREDICTED_PREFIX = "predicted_"  # user attrs of a confirmed trial: predicted_<objective>
SUPERNET_EVALUATE = "nas_attn.search.oneshot_run:supernet_trial"


@dataclass(frozen=True)
class OneShotContext:
    """What the runner hands the pipeline: the run folder and its run.json (updated in place),
    the runtime's settings and the sampler of a segment (a function of the trial count)."""

    run_dir: Path
    info: dict[str, Any]
    address: str | None
    num_cpus: int | None
    num_gpus: float | None
    quiet: bool
    console: Any
    sampler: Callable[[int], Any]
    # enters a Ray runtime kept until the run's end (the runner's), so the supernet's trial
    # and the confirmation share one start; None: a runtime for the supernet's trial alone
    runtime: Callable[[], Any] | None = None

    def say(self, text: str) -> None:
        if not self.quiet and self.console is not None:
            self.console.print(text, highlight=False, soft_wrap=True)


def predicted_study_name(name: str) -> str:
    return name + PREDICTED_SUFFIX


def recipe(setup: Any) -> dict[str, Any]:
    """The supernet checkpoint's recipe: the study's training with ``oneshot.epochs``, the
    mode and the study's seed."""
    from nas_attn.oneshot import recipe_of

    s = OneShotSettings(**setup.oneshot)
    train = dict(setup.evaluate_settings["train"])
    return recipe_of({**train, "epochs": s.epochs}, s.mode, int(train.get("seed", 0)))


def prepare_confirmation(setup: Any, study: Any, ctx: OneShotContext
                         ) -> tuple[Any, Callable[[], Mapping[str, Any] | None]]:
    """Phases 1 and 2 (each skipped when done), then the setup and the fixed parameters of the
    confirmation segment; sets ``requested_trials`` (K) in run.json."""
    from nas_attn.oneshot import build_supernet, load_supernet
    from nas_attn.oneshot.checkpoint import load_progress

    settings = OneShotSettings(**setup.oneshot)
    rec = recipe(setup)
    folder = ctx.run_dir / SUPERNET_DIR
    supernet = build_supernet(setup.propose.space, seed=int(rec["seed"]))
    oneshot = dict(ctx.info.get("oneshot") or {})
    if not (folder / "supernet.json").is_file():
        progress = load_progress(folder, supernet, rec)  # refuses another space or recipe
        after = f", resumed after epoch {progress['epoch']}" if progress else ""
        ctx.say(f"one-shot 1/3: training the supernet ({settings.mode}, {settings.epochs} "
                f"epochs{after}) as one Ray trial")
        del progress
        _update(ctx, oneshot, phase="supernet")
        train_phase(setup, ctx, folder, rec)
    meta = load_supernet(supernet, folder, rec)  # refuses another space or recipe
    oneshot["supernet"] = {k: meta[k] for k in ("cost_epochs", "train_time_s") if k in meta}
    _update(ctx, oneshot, phase="search")
    predictions = search_phase(setup, study, supernet, settings, ctx)
    picks = pick_confirmations(predictions, setup.directions, settings.confirm)
    confirmed = confirmed_hashes(study, ctx.info["run_id"])
    todo = still_to_confirm(picks, confirmed)
    ctx.info["requested_trials"] = len(picks)
    _update(ctx, oneshot, phase="confirm", picks=[p.spec_hash for p in picks])
    ctx.say(f"one-shot 3/3: confirming {len(picks)} architecture(s) of the predicted front "
            f"({len(picks) - len(todo)} already trained)")
    names = [o.name for o in setup.objectives]
    attrs = {p.spec_hash: {**{PREDICTED_PREFIX + n: v for n, v in zip(names, p.values,
                                                                       strict=True)},
                           "predicted_number": p.number} for p in picks}
    queue = [dict(p.params) for p in todo]
    confirm = dataclasses.replace(setup, propose=ConfirmProposer(setup.propose, attrs),
                                  early_stopping={}, **seeded(setup, settings))
    return confirm, lambda: queue.pop(0) if queue else None


def seeded(setup: Any, settings: OneShotSettings) -> dict[str, Any]:
    """The evaluator of a confirmation with ``settings.seeds`` > 1: each trial trains its
    architecture once per seed (:mod:`nas_attn.search.confirm_seeds`); {} for one seed."""
    from nas_attn.config import parse_seeds
    from nas_attn.search.confirm_seeds import SEEDS_EVALUATOR, seeded_settings

    if settings.seeds == 1:
        return {}
    first = int(setup.evaluate_settings["train"].get("seed", 0))
    seeds = parse_seeds(settings.seeds, "oneshot.seeds", first=first)
    return {"evaluator": SEEDS_EVALUATOR,
            "evaluate_settings": seeded_settings(setup.evaluate_settings, setup.evaluator, seeds)}


def _update(ctx: OneShotContext, oneshot: dict[str, Any], **changes: Any) -> None:
    oneshot.update(changes)
    ctx.info["oneshot"] = oneshot
    rd.write_json(ctx.run_dir / rd.RUN_JSON, ctx.info)


def confirmed_hashes(study: Any, run_id: str) -> set[str]:
    """Spec hashes of this run's counted trials of the run's study."""
    from nas_attn.search.searcher import is_counted

    return {t.user_attrs["spec_hash"] for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("run_id") == run_id and is_counted(t)
            and "spec_hash" in t.user_attrs}


class ConfirmProposer:
    """The study's proposer, which also writes a confirmed architecture's predictions onto
    its trial."""

    def __init__(self, base: Any, predicted: Mapping[str, Mapping[str, Any]]) -> None:
        self.base = base
        self.space = base.space
        self.predicted = dict(predicted)

    def __call__(self, trial: Any) -> Any:
        proposal = self.base(trial)
        for k, v in self.predicted.get(proposal.spec_hash, {}).items():
            trial.set_user_attr(k, v)
        return proposal


# -- phase 1: the supernet, one Ray trial -----------------------------------------------------


class _Unrecorded:
    """The trial of the supernet job: not an Optuna trial (the job is no architecture)."""

    def __init__(self) -> None:
        self.user_attrs: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


@dataclass
class _Job:
    trial: _Unrecorded
    last_result: Mapping[str, Any] | None = None


class SupernetJob(TrialBookkeeping):
    """The Ray searcher of phase 1: hands out one job, keeps its outcome."""

    def __init__(self, config: Mapping[str, Any], epochs: int, run_id: str) -> None:
        super().__init__(None)
        self.config = dict(config)
        self.objectives = ()
        self.epochs = epochs
        self.run_id = run_id
        self.outcome: Any = None

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.issued:
            return Searcher.FINISHED
        self.issued = 1
        self._pending[trial_id] = _Job(_Unrecorded())
        return dict(self.config)

    def unfinished(self) -> bool:
        return self.outcome is None or super().unfinished()

    def _finish(self, p: Any, out: Any) -> None:
        self.outcome = out


def train_phase(setup: Any, ctx: OneShotContext, folder: Path, rec: Mapping[str, Any]) -> None:
    """Train and checkpoint the supernet in one Ray trial; KeyboardInterrupt when cut short,
    TrialError when the trial failed."""
    from nas_attn.search import execution as ex
    from nas_attn.search.outcome import COMPLETE

    o = setup.options
    space = setup.propose.space
    settings = {"space": space.to_dict(), "space_hash": space.hash, "recipe": dict(rec),
                "data": dict(setup.evaluate_settings["data"]), "folder": str(folder.resolve()),
                "cpus_per_trial": o.cpus_per_trial, "gpus_per_trial": o.gpus_per_trial}
    job = SupernetJob({"spec_hash": "supernet"}, int(rec["epochs"]), ctx.info["run_id"])
    if ctx.runtime is not None:
        ctx.runtime()
    with ex.ray_runtime(ctx.address, ctx.num_cpus, ctx.num_gpus):  # joins the runner's
        interrupted = ex.run_segment(supernet_trial, settings, job, ctx.run_dir,
                                     ex.TrialResources(o.cpus_per_trial, o.gpus_per_trial), jobs=1)
    if interrupted:
        raise KeyboardInterrupt
    if job.outcome is None or job.outcome.state != COMPLETE:
        attrs = dict(job.outcome.attrs) if job.outcome is not None else {}
        raise TrialError(attrs.get("fail_reason", "error"), "the supernet's training failed: "
                         + str(attrs.get("fail_message", "no result")))


def supernet_trial(config: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Ray function trainable (worker side): train the supernet, report every epoch, write the
    checkpoint (weights, then JSON) into ``settings["folder"]``."""
    import torch
    from ray import tune

    from nas_attn.data import load_dataset
    from nas_attn.oneshot import build_supernet, save_supernet, train_supernet
    from nas_attn.oneshot.checkpoint import PROGRESS, load_progress, save_progress
    from nas_attn.search.fingerprint import canonical_json
    from nas_attn.search.trainable import trial_device, worker_cache
    from nas_attn.space import parse_space
    from nas_attn.train import TrainConfig

    cpus = max(1, math.floor(float(settings.get("cpus_per_trial", 1))))
    torch.set_num_threads(cpus)
    if settings.get("plugins"):
        from nas_attn.plugins import load_shipped

        load_shipped(settings["plugins"])
    space = parse_space(settings["space"])
    if space.hash != settings["space_hash"]:
        raise TrialError("error", f"the space rebuilt in the worker has hash {space.hash}, "
                         f"the driver's {settings['space_hash']}")
    rec = dict(settings["recipe"])
    mode, seed = rec.pop("mode"), int(rec.pop("seed"))
    data_cfg = dict(settings["data"])
    data = worker_cache("data:" + canonical_json(data_cfg), lambda: load_dataset(data_cfg))
    cfg = TrainConfig(**{**rec, "seed": seed, "threads": cpus, "device": trial_device(
        "auto", settings.get("gpus_per_trial"))})
    supernet = build_supernet(space, seed=seed)
    folder = Path(settings["folder"])
    resume = load_progress(folder, supernet, settings["recipe"])  # refused: another recipe
    run = train_supernet(supernet, data, cfg, mode, resume=resume, callback=lambda ep: tune.report(
        {"epoch": ep.epoch, "train_loss": ep.train_loss, "path_passes": ep.path_passes}),
        on_state=lambda st: save_progress(folder, st, space.hash, settings["recipe"]))
    save_supernet(supernet.to("cpu"), folder, settings["recipe"],
                  {"cost_epochs": run.cost_epochs, "train_time_s": round(run.train_time_s, 3),
                   "epochs": len(run.epochs),
                   "resumed_after_epoch": int(resume["epoch"]) if resume else 0})
    (folder / PROGRESS).unlink(missing_ok=True)


# -- phase 2: Optuna against the supernet, on the driver --------------------------------------


def open_predicted(setup: Any, study: Any) -> Any:
    """``<study>:predicted`` in the run's storage, refused when made by another setup."""
    import optuna

    from nas_attn.search import fingerprint as fp

    name = predicted_study_name(setup.name)
    try:
        pstudy = optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:
        pstudy = optuna.create_study(study_name=name, storage=study._storage,
                                     directions=setup.directions)
        pstudy.set_user_attr(fp.ATTR, dict(setup.fingerprint))
        pstudy.set_user_attr("objectives", [o.name for o in setup.objectives])
        return pstudy
    fp.check_compatible(name, pstudy.user_attrs.get(fp.ATTR), setup.fingerprint)
    return pstudy


def predictions_of(pstudy: Any, run_id: str) -> list[Prediction]:
    from optuna.trial import TrialState

    return [Prediction(t.user_attrs["spec_hash"], tuple(t.values), dict(t.params), t.number)
            for t in pstudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("run_id") == run_id]


def search_phase(setup: Any, study: Any, supernet: Any, settings: OneShotSettings,
                 ctx: OneShotContext) -> list[Prediction]:
    """Score proposals until this run has ``settings.proposals`` predictions (those already
    in the predicted study count); returns them."""
    import torch
    from optuna.trial import TrialState

    from nas_attn.data import load_dataset
    from nas_attn.oneshot import calibration_batches, score
    from nas_attn.search.searcher import MAX_CONSECUTIVE_SKIPS
    from nas_attn.train import TrainConfig

    run_id = ctx.info["run_id"]
    pstudy = open_predicted(setup, study)
    reconcile(pstudy, run_id)  # a proposal being scored when the driver died
    mine = predictions_of(pstudy, run_id)
    if len(mine) >= settings.proposals:
        return mine
    scored = {p.spec_hash: p.values for p in mine}
    pstudy.sampler = ctx.sampler(len(pstudy.trials))
    ctx.say(f"one-shot 2/3: scoring {settings.proposals - len(mine)} proposal(s) against the "
            f"supernet ({len(mine)} already scored)")
    train = TrainConfig(**dict(setup.evaluate_settings["train"]))
    torch.set_num_threads(max(1, int(setup.options.cpus_per_trial)))
    data = load_dataset(dict(setup.evaluate_settings["data"]))
    calib = calibration_batches(data, settings.calibration_batches, train.batch_size,
                                seed=train.seed)
    names = [o.name for o in setup.objectives]
    done, skips, t0 = len(mine), 0, time.perf_counter()
    while done < settings.proposals and skips < MAX_CONSECUTIVE_SKIPS:
        trial = ask_owned(pstudy, run_id)
        try:
            proposal = setup.propose(trial)
        except Exception as e:  # an invalid spec from the space: recorded, not scored
            trial.set_user_attr("fail_reason", "error")
            trial.set_user_attr("fail_message", f"{type(e).__name__}: {e}"[:2000])
            pstudy.tell(trial, state=TrialState.FAIL)
            skips += 1
            continue
        trial.set_user_attr("spec_hash", proposal.spec_hash)
        trial.set_user_attr("spec", json.dumps(dict(proposal.spec), sort_keys=True))
        for k, v in proposal.costs.items():
            trial.set_user_attr(k, float(v))
        if proposal.violation:
            trial.set_user_attr("fail_reason", "over_budget")
            trial.set_user_attr("fail_message", proposal.violation[:2000])
            pstudy.tell(trial, state=TrialState.FAIL)
            skips += 1
            continue
        skips = 0
        values = scored.get(proposal.spec_hash)
        if values is None:
            s = score(supernet, proposal.spec, data, calib, train.eval_batch_size)
            trial.set_user_attr("score_ms", round(s.ms, 3))
            values = tuple(float(s.val_accuracy) if n == ACCURACY else
                           float(proposal.costs[n]) for n in names)
            scored[proposal.spec_hash] = values
        else:
            trial.set_user_attr("reused", True)
        pstudy.tell(trial, list(values))
        done += 1
    mine = predictions_of(pstudy, run_id)
    ctx.say(f"one-shot 2/3: {len(mine)} prediction(s), {len(scored)} architecture(s) scored "
            f"({time.perf_counter() - t0:.1f} s)")
    if not mine:
        raise ConfigError("oneshot.proposals", settings.proposals, "no proposal could be "
                          f"scored ({skips} in a row were over budget or invalid); loosen the "
                          "space's constraints")
    return mine

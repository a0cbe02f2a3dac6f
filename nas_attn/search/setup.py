"""``SearchSetup``: everything the runner needs, independent of where it came from.

A setup is built from a study file (:func:`nas_attn.search.from_study.setup_from_study`) or from
the synthetic problem (:func:`synthetic_setup`, for tests and overhead benchmarks). ``source``
records how to rebuild it, so ``nas-attn resume RUN_DIR`` can recreate the same setup from the
run folder alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_attn.objectives import DEFAULT_OBJECTIVES, Objective
from nas_attn.search.samplers import SAMPLERS, check_learn_from_pruned, check_startup_trials
from nas_attn.search.searcher import Propose


@dataclass(frozen=True)
class SearchOptions:
    """The budget and resources of one run (CLI flags override the study's ``search``)."""

    trials: int = 20
    sampler: str = "tpe"
    seed: int = 0
    max_concurrent: int | None = None  # None: as many as the cluster's CPUs allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    startup_trials: int | None = None  # random trials before a tpe/gp model (None: 10)
    learn_from_pruned: bool | None = None  # the tpe/gp model sees PRUNED trials (None: gp)
    gpu_memory_gb: float | None = None  # one GPU's memory for packing (None: the device's)

    def __post_init__(self) -> None:
        from nas_attn.errors import ConfigError

        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError("search.trials", self.trials, "must be an integer >= 1")
        if self.sampler not in SAMPLERS:
            raise ConfigError("search.sampler", self.sampler, "unknown sampler", SAMPLERS)
        check_startup_trials(self.sampler, self.startup_trials)
        check_learn_from_pruned(self.sampler, self.learn_from_pruned)
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError("search.max_concurrent", self.max_concurrent, "must be >= 1")
        if self.cpus_per_trial <= 0:
            raise ConfigError("search.cpus_per_trial", self.cpus_per_trial, "must be > 0")
        if isinstance(self.gpus_per_trial, bool) or self.gpus_per_trial < 0:
            raise ConfigError("search.gpus_per_trial", self.gpus_per_trial, "must be >= 0")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ConfigError("search.gpus_per_trial", self.gpus_per_trial,
                              "a share above one GPU must be a whole number (Ray's rule)",
                              [int(self.gpus_per_trial), int(self.gpus_per_trial) + 1])
        if self.gpu_memory_gb is not None and (isinstance(self.gpu_memory_gb, bool)
                                               or not self.gpu_memory_gb > 0):
            raise ConfigError("search.gpu_memory_gb", self.gpu_memory_gb, "must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "sampler": self.sampler, "seed": self.seed,
                "max_concurrent": self.max_concurrent, "cpus_per_trial": self.cpus_per_trial,
                "gpus_per_trial": self.gpus_per_trial, "startup_trials": self.startup_trials,
                "learn_from_pruned": self.learn_from_pruned, "gpu_memory_gb": self.gpu_memory_gb}


@dataclass(frozen=True)
class SearchSetup:
    name: str
    objectives: tuple[Objective, ...]
    epochs: int
    propose: Propose
    evaluator: str  # "module:function" run in the workers
    evaluate_settings: Mapping[str, Any]  # JSON-able, handed to the evaluator
    fingerprint: Mapping[str, Any]
    source: Mapping[str, Any]  # {"kind": "study"|"synthetic", ...} to rebuild on resume
    options: SearchOptions = field(default_factory=SearchOptions)
    early_stopping: Mapping[str, Any] = field(default_factory=dict)  # HalvingConfig fields
    resolved: Mapping[str, Any] = field(default_factory=dict)  # written as study.yaml
    grid: Mapping[str, list[Any]] | None = None  # for the grid sampler
    # fixed hypervolume reference per cost objective (the space's limits), see progress.py
    hv_reference: Mapping[str, float] = field(default_factory=dict)
    # `evaluator: supernet` (search.oneshot_plan.OneShotSettings as a dict), else None
    oneshot: Mapping[str, Any] | None = None

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]


def synthetic_setup(problem: Any, name: str = "synthetic", options: SearchOptions | None = None,
                    early_stopping: Mapping[str, Any] | None = None,
                    objectives: tuple[Objective, ...] | None = None) -> SearchSetup:
    """A setup for :class:`nas_attn.search.synthetic.SyntheticProblem`."""
    from nas_attn import __version__
    from nas_attn.search.synthetic import EVALUATOR

    objectives = objectives or DEFAULT_OBJECTIVES
    es = dict(early_stopping or {})
    fp = {"objectives": [[o.name, o.direction] for o in objectives],
          "space": {"synthetic": problem.to_dict()}, "epochs": problem.epochs,
          "early_stopping": es, "version": __version__}
    return SearchSetup(
        name=name, objectives=objectives, epochs=problem.epochs, propose=problem.propose,
        evaluator=EVALUATOR, evaluate_settings=problem.settings(), fingerprint=fp,
        source={"kind": "synthetic", "problem": problem.to_dict(), "early_stopping": es,
                "objectives": [[o.name, o.direction] for o in objectives]},
        options=options or SearchOptions(), early_stopping=es,
        resolved={"name": name, "synthetic": problem.to_dict(), "early_stopping": es},
        grid=problem.grid(), hv_reference=problem_reference(problem))


def problem_reference(problem: Any) -> dict[str, float]:
    """The synthetic problem's cost limits: its budget, else the largest cost of its space."""
    from optuna.trial import FixedTrial

    costs = dict(problem.propose(FixedTrial({"x": problem.choices - 1})).costs)  # costliest
    if problem.max_flops is not None:
        costs["flops"] = min(costs["flops"], float(problem.max_flops))
    return costs

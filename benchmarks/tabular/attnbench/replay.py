"""Replay a search against a tabular benchmark: the real Optuna samplers, the real early stopping.

One repetition (:func:`replay_once`) drives an Optuna study (directions: accuracy maximise,
FLOPs minimise; in-memory storage) through ask/tell, exactly as the runner's searcher does:

1. ``study.ask()``; the architecture is proposed by walking the table's
   :class:`nas_attn.space.SearchSpace` (the same decision sequence and parameter names as
   ``SearchSpace.suggest`` in a real search; tables without a stored space get one flat
   categorical parameter per recorded parameter name).
2. A duplicate of an architecture already evaluated in this study is told the earlier outcome
   and costs no epochs (the runner reuses equal spec hashes the same way).
3. Otherwise one of the table's seeds is drawn at random and its per-epoch curve answers the
   trial (not the mean over seeds: a search sees one noisy training).
4. With early stopping, the trial reports its accuracy at each rung epoch to
   :class:`nas_attn.search.pruning.ParetoHalving` (with its FLOPs). A stopped trial consumes
   the epochs up to that rung and is told ``PRUNED`` without values, as the runner does, so it
   never enters the front. Otherwise it consumes the full budget and is told ``COMPLETE``
   with (final accuracy of the drawn seed, FLOPs).
5. Every trial carries the runner's user attrs ``flops`` and ``last_accuracy`` (and the study
   its ``objectives``), so ``Method(learn_from_pruned=True)``, the study's
   ``search.learn_from_pruned``, shows the PRUNED trials to the tpe/gp model exactly as in a
   search (:mod:`nas_attn.search.pruned_view`). It is off unless asked for, also for gp,
   whose runner default is on: ``gp+es`` names the GP that ignores PRUNED trials,
   ``gp+es+learn`` the runner's default.

``Method(oracle_ranking=True)`` is an analysis, not a search: the rung sees the table's mean
final accuracy of the architecture instead of the drawn seed's accuracy at the rung, so the rule
ranks perfectly. What that replay still spends is the cost of the rule itself (what it lets go on),
not of its noisy ranking.

Trials run one after another (asynchronous halving with sequential arrivals); a real run
with concurrent workers decides some trials earlier or later.

``Method(pause=True)`` is an analysis too: *promotion-type* halving (Syne Tune's
``type="promotion"``; ASHA as Li et al. first describe it), a rule the runner does not have. Every
trial pauses at every rung instead of being decided on arrival. Before each proposal the replay
looks, highest rung first, for a paused trial ranking in the top ``floor(n / eta)`` of its rung's
table (:func:`promotable`, the runner's ranking :func:`nas_attn.search.pruning.rank_rung`) and
resumes it, as an enqueued trial with the same parameters, up to the next rung (or the full
budget, then COMPLETE), paying only the epochs it adds; only when none is promotable does the
sampler propose. A paused trial is told PRUNED (it is in no front until it completes).

With ``HalvingConfig(promote=True)`` (the study setting ``early_stopping.promote``) a
re-proposed PRUNED architecture is *promoted*, as the runner does: it resumes the same training
(same seed curve) after the rung it stopped at, goes through the later rungs again, and pays
only the epochs it adds. Without it (the default) the re-proposal is told PRUNED again at no
cost.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnbench.metrics import METRICS, FrontScorer, trace_metrics
from attnbench.table import Table, params_key
from nas_attn.errors import ConfigError
from nas_attn.search.outcome import ACCURACY, COMPLETE, PRUNED
from nas_attn.search.placement import PROMOTE, REUSE, Record, place, record_rank
from nas_attn.search.pruned_view import OBJECTIVES_ATTR
from nas_attn.search.pruning import STOP, HalvingConfig, ParetoHalving, rank_rung
from nas_attn.search.samplers import check_startup_trials
from nas_attn.search.samplers import make_sampler as _make_sampler

SAMPLERS = ("random", "tpe", "nsga2", "gp")


def make_sampler(name: str, seed: int, startup: int | None = None,
                 learn_from_pruned: bool = False) -> Any:
    """The runner's sampler for ``name`` (no grid: the replay walks the space by sampling),
    with ``startup`` random trials before a tpe/gp model (None: Optuna's 10)."""
    if name not in SAMPLERS:
        raise ConfigError("sampler", name, "unknown sampler", SAMPLERS)
    return _make_sampler(name, seed, startup_trials=startup, learn_from_pruned=learn_from_pruned)


@dataclass(frozen=True)
class Method:
    """A sampler, with or without early stopping (``halving``); ``startup``: the sampler's
    random trials before its model (the study's ``search.startup_trials``; None: 10)."""

    sampler: str
    halving: HalvingConfig | None = None
    tag: str = ""  # tells apart several early-stopping settings of one sampler
    startup: int | None = None
    oracle_ranking: bool = False  # rungs see the mean final accuracy (see the module doc)
    learn_from_pruned: bool = False  # the tpe/gp model sees PRUNED trials (imputed values)
    pause: bool = False  # promotion-type halving (see the module doc)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError("sampler", self.sampler, "unknown sampler", SAMPLERS)
        check_startup_trials(self.sampler, self.startup, "startup")
        if self.oracle_ranking and not self.early_stopping:
            raise ConfigError("oracle_ranking", True, "needs early stopping (an enabled "
                              "halving setting) to rank anything")
        if self.pause and not self.early_stopping:
            raise ConfigError("pause", True, "needs early stopping (an enabled halving "
                              "setting): its eta, grace and tie-break")
        if self.pause and (self.halving.promote or self.halving.stop_dominated):
            raise ConfigError("pause", True, "replays promotion-type halving, which neither "
                              "stops nor promotes on re-proposal: leave promote and "
                              "stop_dominated off")

    @property
    def early_stopping(self) -> bool:
        return self.halving is not None and self.halving.enabled

    @property
    def promote(self) -> bool:
        """A re-proposed PRUNED architecture resumes (``halving.promote``, see the module doc)."""
        return self.early_stopping and self.halving.promote

    @property
    def name(self) -> str:
        start = "" if self.startup is None else f"-s{self.startup}"
        return self.sampler + start + ("+es" + self.tag if self.early_stopping else "") + (
            "+promote" if self.promote else "") + ("+pause" if self.pause else "") + (
            "+oracle" if self.oracle_ranking else "") + ("+learn" if self.learn_from_pruned else "")


@dataclass
class ReplayRun:
    """One repetition: what each trial was and cost, and the metrics after each trial."""

    method: str
    rep: int
    archs: np.ndarray  # (n,) architecture index of each trial
    seeds: np.ndarray  # (n,) table seed column that answered it (-1: reused; a promoted
    # trial keeps its first seed)
    complete: np.ndarray  # (n,) bool, told COMPLETE
    epochs: np.ndarray  # (n,) epochs consumed by each trial (0 when reused)
    seconds: float  # wall time of the replay (sampler + bookkeeping), metrics excluded
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # per trial, see METRICS

    @property
    def consumed(self) -> np.ndarray:
        """Cumulative epochs after each trial."""
        return np.cumsum(self.epochs)


@dataclass(frozen=True)
class _Seen:
    """An architecture's training in a replay: its seed column, how far it got, its values."""

    seed: int
    record: Record  # COMPLETE, or PRUNED after ``epochs_trained`` epochs (its rung)
    values: list[float] | None  # (final accuracy, FLOPs) when COMPLETE


class _Proposer:
    """``optuna.Trial -> architecture index`` for a table."""

    def __init__(self, table: Table) -> None:
        self.table = table
        space = table.meta.get("space")
        self.space = None
        if space:
            from nas_attn.space import parse_space

            self.space = parse_space(dict(space), "table space")
        else:
            names = sorted({k for p in table.arch_params for k in p})
            self.choices = {n: sorted({p[n] for p in table.arch_params if n in p}, key=repr)
                            for n in names}

    def __call__(self, trial: Any) -> int:
        params: dict[str, Any] = {}
        if self.space is not None:
            def pick(name: str, d: Any) -> Any:
                params[name] = d.suggest(trial, name)
                return params[name]

            self.space._walk(pick)  # the decision sequence of SearchSpace.suggest
        else:
            for n, values in self.choices.items():
                params[n] = trial.suggest_categorical(n, values)
        i = self.table.index.get(params_key(params))
        if i is None:
            raise ConfigError("params", params, "the sampler proposed an architecture that is "
                              "not in the table (the table must cover its whole space)")
        return i


def promotable(tables: Mapping[int, Sequence[tuple[int, float, float]]],
               paused: Mapping[int, int], eta: int, tie_break: str = "crowding") -> int | None:
    """Promotion-type halving's next resume: highest rung first, the best-ranked architecture
    paused at that rung (``paused``: architecture -> rung epoch it waits at) among the top
    ``floor(n / eta)`` of the ``n`` rows (architecture, accuracy, FLOPs) of its rung table;
    None when no paused trial ranks there."""
    for rung in sorted(tables, reverse=True):
        rows = tables[rung]
        for a in rank_rung(rows, tie_break=tie_break)[: len(rows) // eta]:
            if paused.get(a) == rung:
                return a
    return None


def replay_once(table: Table, method: Method, n_trials: int, rep: int,
                scorer: FrontScorer | None = None) -> ReplayRun:
    """One repetition of ``method`` for ``n_trials`` trials; ``rep`` seeds the sampler and the
    draw of seed curves."""
    import optuna
    from optuna.trial import TrialState

    if n_trials < 1:
        raise ConfigError("n_trials", n_trials, "must be >= 1")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    propose = _Proposer(table)
    rng = np.random.default_rng([rep, 0x7AB])
    flops = table.flops
    mean_final = table.final_mean
    halving = ParetoHalving(method.halving) if method.early_stopping else None
    rungs = [r for r in method.halving.rungs() if r < table.epochs] if halving else []
    if halving is not None and method.halving.max_epochs != table.epochs:
        raise ConfigError("early_stopping.max_epochs", method.halving.max_epochs,
                          "must equal the table's epochs", [table.epochs])
    archs = np.empty(n_trials, dtype=np.int64)
    seeds = np.full(n_trials, -1, dtype=np.int64)
    complete = np.zeros(n_trials, dtype=bool)
    epochs = np.zeros(n_trials, dtype=np.int64)
    seen: dict[int, _Seen] = {}  # architecture -> its furthest record
    last_acc: dict[int, float] = {}  # architecture -> accuracy when its training ended
    tables: dict[int, list[tuple[int, float, float]]] = {r: [] for r in rungs}  # pause
    paused: dict[int, int] = {}  # pause: architecture -> rung epoch it waits at
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings of some samplers
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(
            method.sampler, rep, method.startup, method.learn_from_pruned))
        study.set_user_attr(OBJECTIVES_ATTR, [ACCURACY, "flops"])  # as the runner records
        for k in range(n_trials):
            resume = promotable(tables, paused, method.halving.eta, method.halving.tie_break
                                ) if method.pause else None
            if resume is not None:
                study.enqueue_trial(dict(table.arch_params[resume]))
            trial = study.ask()
            a = propose(trial)
            archs[k] = a
            if resume is not None and a != resume:
                raise ConfigError("table.arch_params", table.arch_params[resume],
                                  "the enqueued parameters name another architecture")
            earlier = seen.get(a)
            # the searcher's own decision (trials arrive one by one: nothing is in flight)
            where = place(None if earlier is None else earlier.record, False, method.promote, table.epochs)
            if resume is not None:  # pause: the same training resumes after its rung
                s, start = earlier.seed, paused.pop(a)
            elif where.action == REUSE:
                s, values = None, earlier.values
            elif where.action == PROMOTE:  # the same training resumes after its rung
                s, start = earlier.seed, where.resume_epoch
            else:
                s, start = int(rng.integers(table.n_seeds)), 0
            if s is not None:
                seeds[k] = s
                curve = table.acc[a, s]
                # what the rungs see: the drawn seed's accuracy, or (oracle) the mean final one
                ranked = np.full(table.epochs, mean_final[a]) if method.oracle_ranking else curve
                later = [r for r in rungs if r > start]
                if method.pause:  # it waits at the next rung, if any
                    end = later[0] if later else table.epochs
                    if later:
                        tables[end].append((a, float(ranked[end - 1]), float(flops[a])))
                        paused[a] = end
                else:  # it goes on until a rung stops it
                    end = next((r for r in later if halving.report(
                        trial.number, r, float(ranked[r - 1]), float(flops[a])) == STOP), table.epochs)
                epochs[k] = end - start
                values = [float(curve[-1]), float(flops[a])] if end == table.epochs else None
                record = _Seen(s, Record(COMPLETE if values else PRUNED, end), values)
                if earlier is None or record_rank(record.record) > record_rank(earlier.record):
                    seen[a] = record
                last_acc[a] = float(curve[end - 1])
            done = values is not None
            complete[k] = done
            trial.set_user_attr("flops", float(flops[a]))  # the runner's attrs (costs, and
            trial.set_user_attr("last_accuracy", last_acc[a])  # the accuracy it ended at)
            if done:
                study.tell(trial, values)
            else:
                study.tell(trial, state=TrialState.PRUNED)
    seconds = time.perf_counter() - t0
    run = ReplayRun(method.name, rep, archs, seeds, complete, epochs, seconds)
    if scorer is not None:
        run.metrics = trace_metrics(scorer, archs, complete)
    return run


def _task(args: tuple[Table, Method, int, int]) -> ReplayRun:
    table, method, n_trials, rep = args
    return replay_once(table, method, n_trials, rep, FrontScorer.of(table))


def replay(table: Table, methods: Sequence[Method], n_trials: int, reps: int,
           workers: int = 1, first_rep: int = 0) -> dict[str, list[ReplayRun]]:
    """Every method for ``reps`` repetitions (reps ``first_rep ..``), metrics included.

    ``workers > 1`` spreads the (method, rep) pairs over that many processes (fork)."""
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError("reps", reps, "must be an integer >= 1")
    tasks = [(table, m, n_trials, first_rep + r) for m in methods for r in range(reps)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            runs = pool.map(_task, tasks, chunksize=1)
    else:
        runs = [_task(t) for t in tasks]
    out: dict[str, list[ReplayRun]] = {m.name: [] for m in methods}
    for run in runs:
        out[run.method].append(run)
    return out


def summarize(runs: Mapping[str, Sequence[ReplayRun]], target: float = 0.95
              ) -> dict[str, dict[str, Any]]:
    """Per method: medians over repetitions of the final metrics, trials and epochs to
    ``target`` hypervolume ratio and trials until every true-front architecture is found
    (exact recall 1; each inf when fewer than half the reps reach it), epochs used; a 95 %
    bootstrap interval of the median trials to ``target``."""
    from attnbench.metrics import first_reaching, median_ci, trials_to

    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        n = len(rs[0].archs)
        t_to = [trials_to(r.metrics["hv_ratio"], target) for r in rs]
        e_to = [first_reaching(r.metrics["hv_ratio"], r.consumed, target) for r in rs]
        summary: dict[str, Any] = {
            "reps": len(rs), "trials": n,
            "trials_to_target": float(np.median(t_to)),
            "trials_to_target_ci": list(median_ci(t_to)),
            "epochs_to_target": float(np.median(e_to)),
            "reached_target": float(np.mean(np.isfinite(t_to))),
            "trials_to_front": float(np.median(
                [trials_to(r.metrics["recall_exact"], 1.0) for r in rs])),
            "epochs_total": float(np.median([r.consumed[-1] for r in rs])),
            "complete": float(np.median([r.complete.sum() for r in rs])),
            "unique_archs": float(np.median([len(set(r.archs.tolist())) for r in rs])),
            "replay_seconds": float(np.sum([r.seconds for r in rs])),
        }
        for m in METRICS:
            summary[m] = float(np.nanmedian([r.metrics[m][-1] for r in rs]))
        out[name] = summary
    return out

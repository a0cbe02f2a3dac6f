"""Reading a run back: the trials table and ``load_run``.

The trials table has one row per Optuna trial: ``number``, ``run_id``, ``state``,
``fail_reason``, ``fail_message``, ``counts`` (toward the requested trials), ``spec_hash``,
``reused``/``reused_from``, ``promoted_from``/``resume_epoch`` (a promoted trial: the stopped
trial it resumed and the epoch it resumed after), one column per objective (accuracy for
COMPLETE trials only; never NaN told to Optuna), the costs computed before training (``flops``,
``params``..., for every proposed trial), ``epochs_trained``, ``last_accuracy``, one
``choice.<param>`` column per sampled choice (per-stage choices), the spec as JSON and timings
(``datetime_start``, ``datetime_complete``, ``duration_s``, ``train_seconds``). It is written as
``trials.csv`` (and ``trials.parquet`` when pyarrow is installed) at the end of every run
segment; :func:`load_run` rebuilds it from the storage when it can (the storage is the source of
truth) and falls back to the CSV.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.files import write_atomically
from nas_attn.objectives import ACCURACY, COSTS, FLOPS, Objective, objectives_of

CRITERIA = ("max-accuracy", "min-flops", "knee")
_ATTRS = ("run_id", "fail_reason", "fail_message", "counts", "spec_hash", "reused",
          "reused_from", "promoted_from", "resume_epoch", "epochs_trained", "last_accuracy",
          "train_seconds", "images_per_s", "node_id", "node_ip",
          "confirm_seeds", "seed_val_accuracy")  # a one-shot run's seeds (confirm_seeds.py)


def trials_frame(study: Any) -> Any:
    import pandas as pd

    objectives = study.user_attrs.get("objectives") or [
        f"objective_{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for k in _ATTRS:
            row[k] = t.user_attrs.get(k)
        for i, name in enumerate(objectives):
            row[name] = t.values[i] if t.values else None
        for k in COSTS:  # known before training, so shown for every trial that has them
            if row.get(k) is None and k in t.user_attrs:
                row[k] = t.user_attrs[k]
        for k, v in t.params.items():
            row[f"choice.{k}"] = v
        row["spec"] = t.user_attrs.get("spec")
        row["datetime_start"] = t.datetime_start
        row["datetime_complete"] = t.datetime_complete
        row["duration_s"] = (t.duration.total_seconds() if t.duration is not None else None)
        rows.append(row)
    return pd.DataFrame(rows)


def write_trials_table(study: Any, run_dir: Path) -> Path:
    df = trials_frame(study)
    path = write_atomically(run_dir / "trials.csv", lambda tmp: df.to_csv(tmp, index=False))
    try:
        df.to_parquet(run_dir / "trials.parquet", index=False)
    except (ImportError, ValueError, TypeError):  # no pyarrow, or a column it cannot store
        pass
    return path


@dataclass
class Run:
    """A finished (or interrupted) run, from its folder."""

    path: Path
    info: dict[str, Any]
    _study: Any = None
    _trials: Any = None

    @property
    def study(self) -> Any:
        if self._study is None:
            import optuna

            from nas_attn.search import storage as st

            url = (st.default_url(self.path) if self.info.get("storage_in_run_dir")
                   else st.url_from_env(self.info.get("storage")))
            if url is None or st.is_redacted(url):
                raise ConfigError("storage", self.info.get("storage"),
                                  f"set ${st.ENV_STORAGE} to the storage URL with its password")
            self._study = optuna.load_study(study_name=self.info["study_name"],
                                            storage=st.open_storage(url))
        return self._study

    @property
    def objectives(self) -> list[tuple[str, str]]:
        return [(n, d) for n, d in self.info["objectives"]]

    @property
    def trials(self) -> Any:
        if self._trials is None:
            import pandas as pd

            try:
                self._trials = trials_frame(self.study)
            except ConfigError:
                self._trials = pd.read_csv(self.path / "trials.csv")
        return self._trials

    @property
    def objective_list(self) -> tuple[Objective, ...]:
        return objectives_of(self.info["objectives"])

    def front(self) -> Any:
        """The run's Pareto front (:func:`nas_attn.objectives.pareto_front`) as a DataFrame,
        by the first objective: COMPLETE trials, one row per architecture (a trial that
        reused an earlier result is left out); pruned and failed trials never enter."""
        from nas_attn.objectives import entries_of_frame, pareto_front

        df = self.trials
        if df.empty:
            return df
        names = [n for n, _ in self.objectives]
        on = {e.number for e in pareto_front(entries_of_frame(df, names),
                                             [d for _, d in self.objectives])}
        return df[df["number"].isin(on)].sort_values(names[0]).reset_index(drop=True)

    @property
    def reference(self) -> tuple[float, ...] | None:
        """The run's hypervolume reference point: the one recorded in the study, else (a run
        from before it was recorded, or a storage out of reach) the rule of
        :func:`nas_attn.objectives.reference_point` applied to the trials."""
        from nas_attn.objectives import (
            entries_of_frame,
            recorded_reference,
            reference_point,
        )

        objs = self.objective_list
        try:
            attrs = self.study.user_attrs
        except ConfigError:
            attrs = {}
        ref = recorded_reference(attrs, objs)
        if ref is None and not self.trials.empty:
            ref = reference_point(objs, run_limits(self.path, self.info),
                                  entries_of_frame(self.trials, [o.name for o in objs]))
        return ref

    def hypervolume(self) -> float | None:
        """The normalised hypervolume of the front against :attr:`reference` (the number the
        closing line of ``nas-attn search`` prints); None without a reference point."""
        from nas_attn.objectives import normalized_hypervolume

        ref = self.reference
        if ref is None:
            return None
        names = [n for n, _ in self.objectives]
        return normalized_hypervolume(self.front()[names].to_numpy(dtype=float).tolist(),
                                      [d for _, d in self.objectives], ref)

    def best(self, criterion: str = "knee") -> Any:
        """One row of the front: ``max-accuracy``, ``min-flops`` or the ``knee``."""
        from nas_attn.pareto import knee_point

        if criterion not in CRITERIA:
            raise ConfigError("criterion", criterion, "unknown criterion", CRITERIA)
        front = self.front()
        if front.empty:
            raise ConfigError("criterion", criterion, "the run has no COMPLETE trial")
        if criterion == "max-accuracy":
            return front.loc[front[ACCURACY].idxmax()]
        if criterion == "min-flops":
            return front.loc[front[FLOPS].idxmin()]
        names = [n for n, _ in self.objectives]
        i = knee_point(front[names].to_numpy(dtype=float), [d for _, d in self.objectives])
        return front.iloc[i]

    def spec(self, row: Any) -> dict[str, Any]:
        return json.loads(row["spec"])


def load_run(path: str | Path) -> Run:
    from nas_attn.search.run_dir import read_run

    p = Path(path)
    return Run(p, read_run(p))


def run_limits(run_dir: Path, info: Mapping[str, Any]) -> dict[str, float]:
    """The cost limits a run's reference point takes (the space's whole-network limits, or the
    synthetic problem's), read back from its folder, for runs that recorded no reference."""
    from nas_attn.search.run_dir import STUDY_YAML

    source = info.get("source") or {}
    if source.get("kind") == "synthetic":
        from nas_attn.search.setup import problem_reference
        from nas_attn.search.synthetic import SyntheticProblem

        return problem_reference(SyntheticProblem.from_dict(source["problem"]))
    path = run_dir / STUDY_YAML
    if not path.exists():
        return {}
    from nas_attn.yamlio import load_yaml

    raw = load_yaml(path)
    space = raw.get("space") if isinstance(raw, Mapping) else None
    network = (space.get("constraints") or {}) if isinstance(space, Mapping) else {}
    out = {}
    for key, name in (("max_flops", "flops"), ("max_params", "params")):
        if network.get(key) is not None:
            out[name] = float(network[key])
    return out

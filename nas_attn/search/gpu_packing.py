"""GPU memory safety for packed trials: estimate each proposal's peak before it starts.

With ``gpus_per_trial`` < 1, ``1 / gpus_per_trial`` trials share a GPU; a trial whose peak
memory does not fit in its share would make itself and its neighbours run out of memory. When
the memory of one GPU is known (``search.gpu_memory_gb`` / ``--gpu-memory-gb``, else the first
CUDA device the driver sees; unknown on a machine without one: then shares are taken as asked),
every proposal of a study is estimated (:func:`nas_attn.cost.memory.train_memory`, one
meta-device pass at the training batch size) and

- a proposal that needs more than one whole GPU is refused before training: told FAIL
  ``over_budget`` with the two figures, not counted, as a proposal over a cost constraint;
- one that needs more than its share asks Ray for a larger one (the smallest multiple of the
  share that holds it, :func:`nas_attn.cost.memory.gpu_share`), so fewer trials run beside it.

The estimate and the share go into the proposal's costs (``memory_mb``, ``gpu_share``), so each
trial records them; the trial's resource request reads ``gpu_share`` from its config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from nas_attn.search.searcher import Proposal, Propose

SHARE_KEY = "gpu_share"
MEMORY_KEY = "memory_mb"


def gpu_memory_bytes(gpu_memory_gb: float | None) -> int | None:
    """The memory of one GPU: the option when given, else the first CUDA device's, else None."""
    if gpu_memory_gb is not None:
        return int(float(gpu_memory_gb) * 2**30)
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


@dataclass(frozen=True)
class MemoryGuard:
    """``optuna.Trial -> Proposal``: ``propose``, then the memory check of the module docstring."""

    propose: Propose
    input_size: tuple[int, ...]
    train: Mapping[str, Any]
    gpus_per_trial: float
    gpu_memory: int

    def __call__(self, trial: Any) -> Proposal:
        from nas_attn.cost.memory import CUDA_CONTEXT_BYTES, gpu_share, train_memory

        p = self.propose(trial)
        if p.violation:
            return p
        peak = train_memory(p.spec, self.input_size, self.train).total
        share = gpu_share(peak, self.gpus_per_trial, self.gpu_memory)
        costs = {**p.costs, MEMORY_KEY: round(peak / 2**20, 1)}
        if share is None:
            why = (f"estimated peak memory {peak / 2**30:.2f} GiB + CUDA context "
                   f"{CUDA_CONTEXT_BYTES / 2**30:.2f} GiB does not fit one GPU of "
                   f"{self.gpu_memory / 2**30:.2f} GiB")
            return replace(p, costs=costs, violation=why)
        return replace(p, costs={**costs, SHARE_KEY: share})


def guard(propose: Propose, evaluate_settings: Mapping[str, Any], gpus_per_trial: float,
          gpu_memory_gb: float | None) -> Propose:
    """``propose`` with the memory check when it applies: GPU trials of a study (a proposer
    with an ``input_size`` and a ``train`` section) and a known GPU memory."""
    input_size = getattr(propose, "input_size", None)
    train = evaluate_settings.get("train")
    if gpus_per_trial <= 0 or input_size is None or not isinstance(train, Mapping):
        return propose
    memory = gpu_memory_bytes(gpu_memory_gb)
    if memory is None:
        return propose
    return MemoryGuard(propose, tuple(input_size), dict(train), gpus_per_trial, memory)


def share_of(default: float) -> Any:
    """The trial config -> GPU share function for Ray (the guard's ``gpu_share`` cost, else
    ``default``)."""

    def share(config: Mapping[str, Any]) -> float:
        costs = config.get("costs") or {}
        if isinstance(costs, str):
            costs = json.loads(costs)
        return float(costs.get(SHARE_KEY, default))

    return share

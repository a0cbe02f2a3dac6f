"""Peak training memory of a spec, estimated before training, and the GPU share it needs.

:func:`estimate_memory` runs one training forward pass on the meta device (shapes only,
nothing allocated or computed, like :func:`nas_attn.cost.profile`) at the training batch size
and adds up what a training step of :func:`nas_attn.train.train_spec` holds at once:

- ``params``: the weights and buffers (fp32);
- ``grads``: one gradient per trainable weight (the loop clears gradients after the forward
  pass, so the previous step's are alive while activations are saved);
- ``optimizer``: SGD with momentum keeps one buffer per weight, AdamW two, SGD without
  momentum none;
- ``activations``: every tensor autograd saves for the backward pass (counted once each,
  weights excluded), recorded with ``saved_tensors_hooks``; with ``amp`` (fp16/bf16) they are
  counted at 2 bytes an element, plus a half-precision copy of the weights (autocast's cache);
- ``workspace``: the backward pass's transient gradients, taken as twice the largest saved
  activation (its gradient in and out);
- ``step``: the optimizer step's temporaries (the multi-tensor kernels used on CUDA make one
  gradient-sized list for SGD with momentum, two for AdamW); the step runs once the
  activations are freed, so the peak is the larger of the two phases;
- ``batch``: the input batch (fp32) and labels, and ``data``: a dataset kept resident on the
  device (its bytes, given by the caller).

It is a deliberate upper bound of the tensors a step holds, not of the allocator: a CUDA
process adds its context (:data:`CUDA_CONTEXT_BYTES`) and the caching allocator's slack.
Checked against measured peaks (tests/test_memory.py, on CPU with :func:`measure_peak`; on a GPU
with ``torch.cuda.max_memory_allocated`` by ``make gpu-check``).

:func:`gpu_share` turns an estimate into the GPU share a trial must ask Ray for (pure).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

CUDA_CONTEXT_BYTES = 600 * 2**20  # one CUDA context per trial process (about 0.5 GiB measured)
OPTIMIZER_STATES = {"sgd": 1, "adamw": 2}  # buffers per weight (sgd without momentum: 0)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training step holds at once (see the module docstring for each part)."""

    params: int
    grads: int
    optimizer: int
    activations: int
    workspace: int
    batch: int
    data: int = 0
    step: int = 0  # the optimizer step's temporaries (activations are freed by then)

    @property
    def total(self) -> int:
        held = self.params + self.grads + self.optimizer + self.data
        return held + max(self.activations + self.workspace + self.batch, self.step)

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def estimate_memory(spec: Any, input_size: Sequence[int], batch_size: int,
                    optimizer: str = "sgd", momentum: float = 0.9, amp: str = "none",
                    data_bytes: int = 0) -> MemoryEstimate:
    """Peak bytes of one training step of ``spec`` at ``batch_size`` on inputs of
    ``input_size`` (C, H, W). Pure: the same arguments give the same estimate."""
    from nas_attn.arch import build_model, load_spec
    from nas_attn.cost.counter import MetaInitMode

    canon = load_spec(spec)
    with torch.device("meta"), MetaInitMode():
        model = build_model(canon)
    model.train()
    weights = {id(p) for p in model.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    param_bytes = sum(_nbytes(t) for t in (*model.parameters(), *model.buffers()))
    grad_bytes = sum(_nbytes(p) for p in trainable)
    saved: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t  # a weight's view (w.t()) is the weight
        if id(base) not in weights:
            saved.setdefault(id(t), t)  # kept alive: ids stay unique for the pass
        return t

    x = torch.empty((int(batch_size), *map(int, input_size)), device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    elements = [t.numel() for t in saved.values()]
    if amp in ("fp16", "bf16"):
        act = 2 * sum(elements)
        largest = 2 * max(elements, default=0)
        param_bytes += sum(2 * p.numel() for p in trainable)  # autocast's half-weight cache
    else:
        act = sum(_nbytes(t) for t in saved.values())
        largest = max((_nbytes(t) for t in saved.values()), default=0)
    states = OPTIMIZER_STATES.get(optimizer, 1)
    if optimizer == "sgd" and not momentum:
        states = 0
    batch = _nbytes(x) + 8 * int(batch_size) + _nbytes(out)
    return MemoryEstimate(params=param_bytes, grads=grad_bytes, optimizer=states * grad_bytes,
                          activations=act, workspace=2 * largest, batch=batch,
                          data=int(data_bytes), step=states * grad_bytes)


def train_memory(spec: Any, input_size: Sequence[int], train: Mapping[str, Any],
                 data_bytes: int = 0) -> MemoryEstimate:
    """:func:`estimate_memory` with the settings of a study's ``train`` section."""
    return estimate_memory(spec, input_size, int(train.get("batch_size", 128)),
                           str(train.get("optimizer", "sgd")), float(train.get("momentum", 0.9)),
                           str(train.get("amp", "none")), data_bytes)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def gpu_share(peak_bytes: int, gpus_per_trial: float, gpu_memory_bytes: int,
              overhead_bytes: int = CUDA_CONTEXT_BYTES) -> float | None:
    """The GPU share a trial of ``peak_bytes`` must ask for (pure).

    With fractional shares (``gpus_per_trial`` < 1, packing ``k = floor(1 / share)`` trials to
    a GPU) a trial gets the smallest multiple of the share whose memory (the share of
    ``gpu_memory_bytes``) holds its peak plus its process's ``overhead_bytes``: a trial too big
    to sit beside ``k - 1`` neighbours takes the room of two, three... so fewer run beside it
    (serialised, not crashed). A whole-GPU request is kept as it is. None when the trial does
    not fit on one GPU at all (it is refused before training).
    """
    need = int(peak_bytes) + int(overhead_bytes)
    if need > gpu_memory_bytes:
        return None
    if gpus_per_trial >= 1:
        return float(gpus_per_trial)
    per_gpu = max(1, math.floor(1 / gpus_per_trial + 1e-9))
    slots = min(per_gpu, -(-need * per_gpu // int(gpu_memory_bytes)))  # exact ceiling
    return 1.0 if slots >= per_gpu else round(max(1, slots) / per_gpu, 6)


# -- measuring (tests and the GPU check) --------------------------------------------------------


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages created while it is active, and their peak (checked
    after every op; a storage counts until its last tensor is gone). On CPU this is the
    counterpart of ``torch.cuda.max_memory_allocated``: tensors, not the allocator."""

    def __init__(self, existing: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._ref = StorageWeakRef
        self.live: dict[int, tuple[Any, int]] = {}  # data_ptr -> (weak ref, bytes)
        for t in existing:  # there before: known (in-place updates create nothing), not counted
            self.live[t.untyped_storage().data_ptr()] = (self._ref(t.untyped_storage()), 0)
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        for ptr in [p for p, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(ptr)[1]
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr and ptr not in self.live:
                    self.live[ptr] = (self._ref(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def measure_peak(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 make_optimizer: Callable[[list[nn.Parameter]], Any], steps: int = 2) -> int:
    """Peak bytes of tensors during ``steps`` training steps of ``model`` on ``(x, y)`` in the
    order of :func:`nas_attn.train.train_spec` (forward, clear gradients, backward, step):
    the weights, buffers and batch present before, plus the peak of what the steps create. On
    CUDA, ``torch.cuda.max_memory_allocated`` is the direct measure instead."""
    import torch.nn.functional as F

    model.train()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad])
    before = sum(_nbytes(t) for t in (*model.parameters(), *model.buffers(), x, y))
    # (counted here; LiveBytes then adds only what the steps create)
    with LiveBytes([*model.parameters(), *model.buffers(), x, y]) as live:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            del loss
    return before + live.peak

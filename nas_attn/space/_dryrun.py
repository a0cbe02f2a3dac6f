"""The dry run: what a search space holds, without training anything.

Size, how many combinations cannot be built (grouped by reason), the FLOPs and parameter range,
constraint violations and a few sample specs. Small finite spaces (``exact_limit`` points or
fewer) are walked completely and the numbers are exact; larger or infinite ones are sampled
uniformly per decision (``samples`` draws from a seeded ``random.Random``) and the report says so.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nas_attn.space._space import Point, SearchSpace

EXACT_LIMIT = 2000


@dataclass
class DryRunReport:
    name: str
    space_hash: str
    size: float
    mode: str  # "exact" (every point) or "sampled"
    evaluated: int
    valid: int
    invalid: int
    invalid_reasons: dict[str, int]
    unique_specs: int
    input_size: tuple[int, int, int]
    flops: tuple[float, float] | None  # (min, max) over the evaluated valid specs
    params: tuple[float, float] | None
    violations: dict[str, int] = field(default_factory=dict)  # constraint -> count of specs
    within_constraints: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "space_hash": self.space_hash,
            "size": "inf" if self.size == math.inf else int(self.size),
            "mode": self.mode,
            "evaluated": self.evaluated,
            "valid": self.valid,
            "invalid": self.invalid,
            "invalid_reasons": self.invalid_reasons,
            "unique_specs": self.unique_specs,
            "input_size": list(self.input_size),
            "flops": {"min": self.flops[0], "max": self.flops[1]} if self.flops else None,
            "params": {"min": self.params[0], "max": self.params[1]} if self.params else None,
            "violations": self.violations,
            "within_constraints": self.within_constraints,
            "samples": self.samples,
        }


def _reason(p: Point) -> str:
    """The error's field and reason with block indices blanked, so one cause is one group."""
    e = p.error
    assert e is not None
    text = f"{e.field}: {e.reason}" if e.reason else str(e)
    return re.sub(r"\bblock \d+\b", "block j", text)


def dry_run(space: SearchSpace, samples: int = 64, input_size: tuple[int, int, int] | None = None,
            seed: int = 0, exact_limit: int = EXACT_LIMIT, show: int = 3) -> DryRunReport:
    """Profile the space (see module docstring). ``show`` sample specs go into the report."""
    from nas_attn.cost import profile

    size = space.size()
    isz = tuple(input_size) if input_size else space.default_input_size()
    if size <= exact_limit:
        mode = "exact"
        points = list(space.enumerate())
    else:
        mode = "sampled"
        rng = random.Random(seed)
        points = [space.point(space.sample_params(rng)) for _ in range(samples)]
    reasons = Counter(_reason(p) for p in points if p.error is not None)
    valid = [p for p in points if p.spec is not None]
    costs: dict[str, tuple[float, float]] = {}
    violations: Counter[str] = Counter()
    within = 0
    for p in valid:
        h = p.spec.hash
        if h not in costs:
            r = profile(p.spec, input_size=isz)
            costs[h] = (float(r.flops), float(r.params))
        bad = space.check(p.spec, isz) if not space.constraints.empty else []
        for v in bad:
            violations[f"{v.where}.max_{v.metric}"] += 1
        within += not bad
    flops = [c[0] for c in costs.values()]
    params = [c[1] for c in costs.values()]
    shown = valid[:: max(1, len(valid) // show)][:show] if valid else []
    return DryRunReport(
        name=space.name,
        space_hash=space.hash,
        size=size,
        mode=mode,
        evaluated=len(points),
        valid=len(valid),
        invalid=len(points) - len(valid),
        invalid_reasons=dict(reasons.most_common()),
        unique_specs=len(costs),
        input_size=isz,  # type: ignore[arg-type]
        flops=(min(flops), max(flops)) if flops else None,
        params=(min(params), max(params)) if params else None,
        violations=dict(violations),
        within_constraints=within,
        samples=[{"params": p.params, "spec": p.spec.to_dict()} for p in shown],
    )

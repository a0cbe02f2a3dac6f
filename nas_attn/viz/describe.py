"""How the dashboard names an architecture and a trial: one line per stage (module, settings,
position, blocks) and the hover text of a point. Pure functions of specs and trial records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas_attn.viz.data import TrialRecord

NO_ATTENTION = "none"


def _module(choice: Any) -> str:
    if not isinstance(choice, Mapping):
        return str(choice)
    hp = ", ".join(f"{k}={_short(v)}" for k, v in choice.items() if k != "type")
    return f"{choice.get('type')}({hp})" if hp else str(choice.get("type"))


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)


def stage_modules(stage: Mapping[str, Any]) -> dict[str, str]:
    """``{"attention", "position", "conv", "fusion"}`` type names of one stage of a spec."""
    att = stage.get("attention")
    conv = stage.get("conv", "standard")
    fusion = stage.get("fusion", "none")
    return {
        "attention": att.get("type") if isinstance(att, Mapping) else NO_ATTENTION,
        "position": str(stage.get("position")) if isinstance(att, Mapping) else "-",
        "conv": conv.get("type") if isinstance(conv, Mapping) else str(conv or "standard"),
        "fusion": fusion.get("type") if isinstance(fusion, Mapping) else str(fusion or "none"),
    }


def describe_stage(i: int, stage: Mapping[str, Any]) -> str:
    """One line per stage: module with settings, position, blocks, conv and fusion."""
    att = stage.get("attention")
    parts = []
    if isinstance(att, Mapping):
        text = f"{_module(att)} @ {stage.get('position')}"
        blocks = stage.get("blocks", "all")
        if blocks != "all":
            text += f" blocks {_short(blocks)}"
        parts.append(text)
    conv, fusion = stage.get("conv", "standard"), stage.get("fusion", "none")
    if isinstance(conv, Mapping) or conv not in ("standard", None):
        parts.append(f"conv {_module(conv)}")
    if isinstance(fusion, Mapping) or fusion not in ("none", None):
        parts.append(f"fusion {_module(fusion)}")
    return f"stage{i}: " + (" · ".join(parts) if parts else "plain")


def describe_spec(spec: Mapping[str, Any] | None) -> tuple[str, ...]:
    if not spec:
        return ("(no spec recorded)",)
    args = spec.get("backbone_args") or {}
    head = _module({"type": str(spec.get("backbone", "?")), **args} if isinstance(args, Mapping)
                   else spec.get("backbone", "?"))  # tiny(blocks=1, width=8)
    return (head, *(describe_stage(i, s) for i, s in enumerate(spec.get("stages") or [])))


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e9:
        return f"{v / 1e9:.4g}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.4g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.4g}k"
    return f"{v:.4g}"


def hover_text(r: TrialRecord, acc_name: str, cost_name: str) -> str:
    """The hover label of one trial (HTML line breaks, as plotly expects)."""
    head = f"#{r.number} {r.state}" + (" (reused)" if r.reused else "")
    lines = [head, f"{acc_name} {_fmt(r.accuracy)} · {cost_name} {_fmt(r.cost)}"]
    if r.epochs is not None:
        lines.append(f"epochs {r.epochs}")
    if r.fail_reason:
        lines.append(f"fail: {r.fail_reason}")
    lines.extend(describe_spec(r.spec))
    return "<br>".join(lines)

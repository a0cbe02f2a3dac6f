"""Contract tests over the WHOLE zoo registry: every registered module is covered automatically.

Per module: output shape and finiteness (train and eval), a finite gradient on every parameter,
the exact parameter-count formula at several widths and hyperparameter values, hyperparameter
declarations (defaults valid, unknown names and out-of-range values refused with a ConfigError
that names them), and every declared variant builds. Tiny tensors only.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam
from nas_attn.modules import MODULES, ModuleEntry, get_module

NAMES = sorted(MODULES.keys())
HPARAM_CASES = [(n, p.name) for n in NAMES for p in get_module(n).hparams]
VARIANT_CASES = [(n, v) for n in NAMES for v in get_module(n).variants]

FORWARD_CHANNELS = (32, 64, 16, 48, 96, 128)  # the first one check() allows is used
PARAM_CHANNELS = (16, 64, 96, 256)
CONV_PAIRS = ((16, 16), (16, 32), (64, 32), (96, 96), (256, 128))
H, W = 8, 6  # not square, so that H/W mix-ups show
NUM_BLOCKS = 3


def _args(entry: ModuleEntry, c: int, *, out: int | None = None, stride: int = 1) -> tuple:
    """Positional constructor arguments of each kind (hyperparameters go as keywords)."""
    if entry.kind == "gate":
        return (c,)
    if entry.kind == "conv":
        return (c, out if out is not None else c, 3, stride)
    return (c, NUM_BLOCKS)


def _first_buildable(
    entry: ModuleEntry, hp: dict[str, Any], widths: tuple[int, ...] = FORWARD_CHANNELS, **kw: Any
) -> int:
    hp = entry.validate(hp, entry.name)
    for c in widths:
        if entry.reason_invalid(*_args(entry, c, **kw), **hp) is None:
            return c
    raise AssertionError(f"{entry.name} {hp}: no width in {widths} can be built")


def _inputs(entry: ModuleEntry, c: int) -> list[torch.Tensor]:
    n = NUM_BLOCKS if entry.kind == "fusion" else 1
    return [torch.randn(2, c, H, W) for _ in range(n)]


def _forward(entry: ModuleEntry, module: torch.nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
    return module(xs) if entry.kind == "fusion" else module(xs[0])


def _expected_shape(entry: ModuleEntry, c: int, out: int, stride: int) -> tuple[int, ...]:
    if entry.kind == "conv":
        return (2, out, -(-H // stride), -(-W // stride))
    return (2, c, H, W)


def _strides(entry: ModuleEntry) -> tuple[int, ...]:
    return (1, 2) if entry.kind == "conv" else (1,)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_finite_and_gradients(name: str) -> None:
    entry = get_module(name)
    for stride in _strides(entry):
        c = _first_buildable(entry, {}, stride=stride)
        out_ch = 2 * c if entry.kind == "conv" else c
        module = entry.build(*_args(entry, c, out=out_ch, stride=stride))
        xs = _inputs(entry, c)
        for x in xs:
            x.requires_grad_(True)
        y = _forward(entry, module, xs)
        assert tuple(y.shape) == _expected_shape(entry, c, out_ch, stride)
        assert torch.isfinite(y).all()
        # a random projection: no symmetry (BN, softmax) can make the loss constant
        (y * torch.randn_like(y)).sum().backward()
        params = dict(module.named_parameters())
        for pname, p in params.items():
            assert p.grad is not None, f"{name}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in xs)

        module.eval()
        with torch.no_grad():
            y = _forward(entry, module, [x.detach() for x in xs])
        assert tuple(y.shape) == _expected_shape(entry, c, out_ch, stride)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_most_parameters_receive_nonzero_gradient_away_from_init(name: str) -> None:
    """Zero-initialised layers (GC's last conv, CBAM's spatial BN) block gradients at init; away
    from init, only parameters a softmax or a norm makes irrelevant may get exactly zero. Width
    64 at least: a LayerNorm over GC's 2 hidden channels at C=32 passes almost no gradient."""
    entry = get_module(name)
    c = _first_buildable(entry, {}, (64, 128, 96))
    module = entry.build(*_args(entry, c, out=c))
    params = dict(module.named_parameters())
    if not params:
        return
    with torch.no_grad():
        for p in params.values():
            p.add_(0.5 * torch.randn_like(p))
    y = _forward(entry, module, _inputs(entry, c))
    (y * torch.randn_like(y)).sum().backward()
    zero = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert len(zero) <= len(params) // 2, f"{name}: zero gradient on {zero}"


def _sample_values(p: HParam) -> list[Any]:
    """A few valid values of one hyperparameter: every choice, or the ends of a range."""
    if p.kind == "categorical":
        return list(p.choices or ())
    if p.kind == "bool":
        return [True, False]
    if p.kind == "subset":
        choices = list(p.choices or ())
        cand = [p.default, choices] + ([[ch] for ch in choices] if p.min_size <= 1 else [])
    else:
        cand = [p.low, p.default, p.high]
        if p.kind == "int":
            cand = [int(v) for v in cand]
    out = []
    for v in cand:
        try:
            out.append(p.validate(v, p.name))
        except ConfigError:
            pass
    return out


def _configs(entry: ModuleEntry) -> list[dict[str, Any]]:
    """Defaults, each hyperparameter's sample values one at a time, and every variant."""
    configs: list[dict[str, Any]] = [{}]
    for p in entry.hparams:
        configs += [{p.name: v} for v in _sample_values(p)]
    configs += [dict(v) for v in entry.variants.values()]
    return configs


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_formula(name: str) -> None:
    entry = get_module(name)
    widths: list[tuple[int, int]] = (
        list(CONV_PAIRS) if entry.kind == "conv" else [(c, c) for c in PARAM_CHANNELS]
    )
    checked = 0
    for hp in _configs(entry):
        hp = entry.validate(hp, name)
        for c, out in widths:
            args = _args(entry, c, out=out)
            if entry.reason_invalid(*args, **hp) is not None:
                continue
            module = entry.build(*args, **hp)
            counted = sum(p.numel() for p in module.parameters())
            assert counted == entry.params(*args, **hp), f"{name} {args} {hp}"
            checked += 1
    assert checked >= 2, f"{name}: fewer than two buildable configurations were checked"


@pytest.mark.parametrize("name", NAMES)
def test_hparam_defaults_validate(name: str) -> None:
    entry = get_module(name)
    defaults = entry.validate({}, name)
    assert set(defaults) == set(entry.hparams.names())
    for p in entry.hparams:
        assert p.validate(p.default, p.name) == defaults[p.name]
    c = _first_buildable(entry, defaults)
    assert isinstance(entry.build(*_args(entry, c), **defaults), torch.nn.Module)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hparam_is_refused_with_the_valid_names(name: str) -> None:
    entry = get_module(name)
    c = _first_buildable(entry, {})
    with pytest.raises(ConfigError) as info:
        entry.build(*_args(entry, c), no_such_setting=1)
    err = info.value
    assert err.field == f"{name}.no_such_setting"
    names = entry.hparams.names() + [a.name for a in entry.hparams.aliases]
    assert [c.split(" ")[0] for c in err.choices or []] == names or err.choices == "(none)"
    for n in names:
        assert n in str(err)


def _bad_values(p: HParam) -> list[Any]:
    if p.kind == "categorical":
        return ["__not_a_choice__"]
    if p.kind == "subset":
        return [["__not_a_choice__"], "not-a-list"]
    if p.kind == "bool":
        return ["yes", 1]
    assert p.low is not None and p.high is not None
    bad = [p.high + abs(p.high) + 1, p.low - abs(p.low) - 1, "7"]
    if p.kind == "int":
        bad.append(p.low + 0.5)
    return bad


@pytest.mark.parametrize(("name", "hparam"), HPARAM_CASES)
def test_out_of_range_hparam_is_refused(name: str, hparam: str) -> None:
    entry = get_module(name)
    decl = entry.hparams.get(hparam, name)
    c = _first_buildable(entry, {})
    for bad in _bad_values(decl):
        with pytest.raises(ConfigError) as info:
            entry.build(*_args(entry, c), **{hparam: bad})
        assert info.value.field.startswith(f"{name}.{hparam}"), info.value.field


@pytest.mark.parametrize(("name", "variant"), VARIANT_CASES)
def test_variant_builds_and_runs(name: str, variant: str) -> None:
    entry = get_module(name)
    hp = dict(entry.variants[variant])
    c = _first_buildable(entry, hp)
    module = entry.build(*_args(entry, c), **hp)
    xs = _inputs(entry, c)
    with torch.no_grad():
        y = _forward(entry, module, xs)
    assert tuple(y.shape) == _expected_shape(entry, c, c, 1)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_documented(name: str) -> None:
    entry = get_module(name)
    assert entry.paper, f"{name}: no paper named"
    doc = sys.modules[entry.cls.__module__].__doc__ or ""
    assert len(doc.strip()) > 40, f"{name}: its file has no docstring naming the paper"
    assert entry.kind in ("gate", "conv", "fusion")

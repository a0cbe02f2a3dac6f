"""The zoo's shared vocabulary (rd_ratio, kernel_size, ...) and the authors' names as aliases.

What the code before the rename wrote must still load: tests/data/legacy_main holds specs with
their spec hashes, two export bundles and a search run folder, all written by that code
(``make_fixtures.py`` there says how). Their hashes, weights and outputs must not move.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import nas_attn
from nas_attn.arch import build_model, canonicalize, load_spec, spec_hash
from nas_attn.errors import ConfigError
from nas_attn.modules import MODULES, create_module, get_module

LEGACY = Path(__file__).parent / "data" / "legacy_main"
BUNDLES = ("bundle_ca_eca_cbam", "bundle_gc")
TINY = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}}


def _spec(attention: dict, **stage: object) -> dict:
    return {**TINY, "stages": [{"attention": attention, **stage}]}


# ------------------------------------------------------------------ names and aliases


RENAMED = [  # module, the name before, its value, the shared name, its value
    ("ca", "reduction", 16, "rd_ratio", 1 / 16),
    ("gc", "ratio", 0.25, "rd_ratio", 0.25),
    ("eca", "k_size", 5, "kernel_size", 5),
    ("cbam", "spatial_kernel", 3, "kernel_size", 3),
    ("cbam", "reduction_ratio", 8, "rd_ratio", 1 / 8),
    ("se", "reduction", 4, "rd_ratio", 0.25),
]


@pytest.mark.parametrize(("module", "alias", "value", "name", "shared"), RENAMED)
def test_an_alias_builds_what_the_shared_name_builds(module, alias, value, name, shared):
    by_alias = canonicalize(_spec({"type": module, alias: value}))
    by_name = canonicalize(_spec({"type": module, name: shared}))
    assert by_alias == by_name
    params = by_alias.stages[0].attention.params
    assert alias not in params and params[name] == pytest.approx(shared)
    assert spec_hash(_spec({"type": module, alias: value})) == spec_hash(by_name)
    a, b = create_module(module, 64, **{alias: value}), create_module(module, 64, **{name: shared})
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_rfcaconv_takes_the_authors_reduction():
    by_alias = canonicalize({**TINY, "stages": [{"conv": {"type": "rfcaconv", "reduction": 8}}]})
    assert by_alias.stages[0].conv.params == {"rd_ratio": 0.125}


def test_every_module_uses_the_shared_names():
    """No module declares a name the vocabulary replaced; where a module reduces channels by a
    ratio or has one kernel, it calls them rd_ratio and kernel_size."""
    replaced = {"reduction", "ratio", "k_size", "spatial_kernel", "reduction_ratio"}
    for name, entry in MODULES.items():
        assert not replaced & set(entry.hparams.names()), name
        for alias in entry.hparams.aliases:
            assert alias.target in entry.hparams.names()
    for name in ("se", "cbam", "ca", "gc", "cat", "sda", "rfcaconv"):
        assert "rd_ratio" in get_module(name).hparams.names(), name
    for name in ("eca", "cbam"):
        assert "kernel_size" in get_module(name).hparams.names(), name


def test_naming_one_hyperparameter_twice_is_refused():
    with pytest.raises(ConfigError) as info:
        canonicalize(_spec({"type": "ca", "reduction": 16, "rd_ratio": 0.0625}))
    assert info.value.field == "stages[0].attention.rd_ratio"
    assert "give one of them" in str(info.value)


@pytest.mark.parametrize(
    ("value", "words"),
    [(0, "positive number"), (True, "positive number"), ("x", "positive number"),
     (128, "rd_ratio=0.0078125: out of range")],
)
def test_a_bad_alias_value_names_the_alias(value, words):
    with pytest.raises(ConfigError) as info:
        create_module("ca", 64, reduction=value)
    assert info.value.field == "ca.reduction"
    assert info.value.value == value
    assert words in str(info.value)


def test_an_unknown_name_lists_the_aliases_too():
    with pytest.raises(ConfigError) as info:
        create_module("ca", 64, reductoin=16)
    assert info.value.choices == ["rd_ratio", "reduction (= rd_ratio)"]


# ------------------------------------------------------------------ search spaces


def _space(ca: object):
    from nas_attn.space import parse_space

    return parse_space({"name": "s", **TINY, "stages": {"default": {
        "attention": {"ca": ca, "eca": {"k_size": [3, "auto"]}}}}})


def test_a_space_naming_aliases_is_the_space_naming_shared_names():
    from nas_attn.space import parse_space

    by_alias = _space({"reduction": [8, 32]})
    by_name = parse_space({"name": "s", **TINY, "stages": {"default": {
        "attention": {"ca": {"rd_ratio": [0.125, 0.03125]},
                      "eca": {"kernel_size": [3, "auto"]}}}}})
    assert by_alias.to_dict() == by_name.to_dict() and by_alias.hash == by_name.hash
    values = {p.spec.stages[0].attention.params.get("rd_ratio") for p in by_alias.enumerate()
              if p.spec is not None and p.spec.stages[0].attention
              and p.spec.stages[0].attention.type == "ca"}
    assert values == {0.125, 0.03125}


def test_a_range_of_a_converted_alias_is_refused_with_the_shared_name():
    with pytest.raises(ConfigError) as info:
        _space({"reduction": {"low": 8, "high": 32}})
    assert info.value.field == "stages.default.attention.ca.reduction"
    assert "a range of rd_ratio" in str(info.value)


def test_a_bad_alias_choice_in_a_space_names_its_index():
    with pytest.raises(ConfigError) as info:
        _space({"reduction": [8, 0]})
    assert info.value.field == "stages.default.attention.ca.reduction[1]"


# ------------------------------------------------------------------ RFCAConv runs CA's code


def test_rfcaconv_is_coordinate_attention_on_its_patches():
    from nas_attn.modules.rfaconv import _to_patches

    torch.manual_seed(0)
    rf = create_module("rfcaconv", 8, 12, 3, 1, rd_ratio=1 / 4).eval()
    ca = create_module("ca", 8, rd_ratio=1 / 4).eval()
    ca.load_state_dict({k: v for k, v in rf.state_dict().items()
                        if k.split(".")[0] in ca.state_dict() or k in ca.state_dict()})
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        patches = _to_patches(rf.features(x), 8, 3)
        torch.testing.assert_close(rf(x), rf.conv(ca(patches)), rtol=0, atol=0)


# ------------------------------------------------------------------ what the old code wrote


def _hash_cases() -> list[dict]:
    return json.loads((LEGACY / "hashes.json").read_text())


def test_spec_hashes_written_before_the_rename_are_unchanged():
    cases = _hash_cases()
    assert len(cases) > 60
    for case in cases:
        assert spec_hash(case["spec"]) == case["hash"], case["spec"]


def test_the_canonical_form_of_old_specs_uses_the_shared_names():
    for case in _hash_cases():
        text = canonicalize(case["spec"]).to_json()
        for old in ('"reduction"', '"k_size"', '"spatial_kernel"', '"ratio"'):
            assert old not in text


def test_space_hashes_written_before_the_rename_are_unchanged():
    """Search spaces (the shipped ones of the old code, and a run's resolved study.yaml) keep
    their hash, so a study fingerprinted by the old code still matches its space."""
    from nas_attn.space import parse_space
    from nas_attn.yamlio import load_yaml

    cases = json.loads((LEGACY / "space_hashes.json").read_text())
    assert {c["file"] for c in cases} >= {"quickstart.yaml", "resnet18_cifar_zoo.yaml"}
    for case in cases:
        assert parse_space(case["space"]).hash == case["hash"], case["file"]
    resolved = load_yaml(LEGACY / "run" / "study.yaml")
    space = parse_space(resolved["space"])
    assert space.hash == resolved["space_hash"]
    assert "rd_ratio" in json.dumps(space.to_dict())


@pytest.mark.parametrize("name", BUNDLES)
def test_a_bundle_written_before_the_rename_loads_with_its_outputs(name, tmp_path):
    from safetensors.torch import load_file

    bundle = shutil.copytree(LEGACY / name, tmp_path / name)
    card = json.loads((bundle / "card.json").read_text())
    assert spec_hash(load_spec(bundle / "spec.yaml")) == card["spec_hash"]
    model = nas_attn.load(bundle)
    io = load_file(str(bundle / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["output"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", BUNDLES)
def test_a_seed_still_gives_the_weights_it_gave(name):
    """The bundles hold the seeded, untrained weights of the old code: same layout (state-dict
    names, RFCAConv's included) and the same order of random initialisation."""
    from safetensors.torch import load_file

    old = load_file(str(LEGACY / name / "weights.safetensors"))
    torch.manual_seed(0)
    new = build_model(LEGACY / name / "spec.yaml").state_dict()
    assert set(new) == set(old)
    for k, v in new.items():
        assert torch.equal(v, old[k]), k


def test_a_run_folder_written_before_the_rename_loads_and_exports(tmp_path):
    from nas_attn.cli import main

    run_dir = shutil.copytree(LEGACY / "run", tmp_path / "run")
    run = nas_attn.load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 4
    for _, row in done.iterrows():
        spec = run.spec(row)
        assert spec_hash(spec) == row["spec_hash"]
        assert (run_dir / "checkpoints" / f"{row['spec_hash']}-s0.safetensors").is_file()
    front = run.front()
    assert not front.empty
    picks = [a for n in done["number"] for a in ("--pick", f"trial={n}")]
    assert main(["export", str(run_dir), *picks, "--quiet"]) == 0
    bundles = sorted((run_dir / "exports").iterdir())
    assert len(bundles) == 4  # every trial's checkpoint fits its network (RFCAConv's too)
    for b in bundles:
        nas_attn.load(b)

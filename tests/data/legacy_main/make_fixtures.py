"""Write the fixtures of tests/test_zoo_vocabulary.py with the code *before* the shared
vocabulary (main at 4febd8f), so the tests check that what that code wrote still loads.

Run from a checkout of that commit (not this one)::

    PYTHONPATH=/path/to/old/checkout RAY_AUTH_MODE=disabled \
        python tests/data/legacy_main/make_fixtures.py tests/data/legacy_main

It writes ``hashes.json`` (specs in the old names with their old spec hashes),
``space_hashes.json`` (that checkout's shipped search spaces with their hashes), two export
bundles (``bundle_ca_eca_cbam``, ``bundle_gc``) with ``io.safetensors`` (an input and the
bundle's output on it), and ``run/`` (a 4-trial search of the tiny net whose space names the
old hyperparameters; Ray's logs left out).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import nas_attn
from nas_attn.arch import build_model, spec_hash
from nas_attn.export.bundle import export_bundle

TINY = {"backbone": "tiny", "backbone_args": {"width": 8, "blocks": 1}, "num_classes": 10}

BUNDLES = {
    "bundle_ca_eca_cbam": {**TINY, "stages": [
        {"attention": {"type": "ca", "reduction": 16}, "position": "post_bn",
         "conv": {"type": "rfcaconv", "rd_ratio": 0.0625}},
        {"attention": {"type": "eca", "k_size": 3}, "position": "post_add"},
        {"attention": {"type": "cbam", "spatial_kernel": 3, "rd_ratio": 0.25}},
    ]},
    "bundle_gc": {**TINY, "stages": [
        {"attention": {"type": "gc", "ratio": 0.25, "fusion": "channel_mul"}},
        {"conv": "rfcaconv"},
        {"attention": {"type": "gc", "ratio": 0.125}},
    ]},
}


def hash_cases() -> list[dict]:
    cases = []
    for backbone, args in (("tiny", {}), ("resnet50", {}), ("mobilenetv2", {})):
        base = {"backbone": backbone, "backbone_args": args}
        gates = [{"type": "ca", "reduction": r} for r in (8, 16, 32, 64)]
        gates += [{"type": "ca"}, {"type": "eca"}, {"type": "gc"}, {"type": "cbam"}]
        gates += [{"type": "eca", "k_size": k} for k in ("auto", 1, 3, 5, 7, 9)]
        gates += [{"type": "gc", "ratio": r, "fusion": f} for r in (1 / 16, 1 / 8, 1 / 4)
                  for f in ("channel_add", "channel_mul")]
        gates += [{"type": "cbam", "spatial_kernel": k, "rd_ratio": 0.125} for k in (3, 7)]
        gates += [{"type": "se", "rd_ratio": 0.25}]
        for g in gates:
            cases.append({**base, "stages": [{"attention": g}] * 2})
        if backbone != "mobilenetv2":
            for conv in ({"type": "rfcaconv"}, {"type": "rfcaconv", "rd_ratio": 0.0625}):
                cases.append({**base, "stages": [{"attention": {"type": "eca", "k_size": 3},
                                                  "conv": conv}]})
    return [{"spec": c, "hash": spec_hash(c)} for c in cases]


STUDY = """\
name: legacy-vocab
space:
  name: legacy-vocab
  backbone: tiny
  backbone_args: {width: 8, blocks: 1}
  input_size: [3, 16, 16]
  stages:
    0:
      attention: {ca: {reduction: [16]}, gc: {ratio: [0.25]}}
      conv: [standard, rfcaconv]
    1:
      attention: {eca: {k_size: [3, auto]}, cbam: {spatial_kernel: [3]}}
    2:
      attention: [none]
data: {name: cluttered-digits, image_size: 16, distractors: 1, train_size: 128, val_size: 64,
       test_size: 64}
train: {epochs: 1, batch_size: 64, lr: 0.05, threads: 1}
early_stopping: {enabled: false}
search: {trials: 4, sampler: random, seed: 0, max_concurrent: 1, cpus_per_trial: 1}
"""


def space_hash_cases(checkout: Path) -> list[dict]:
    """The shipped search spaces of that checkout (they name CA's reduction, ECA's k_size,
    GC's ratio and CBAM's spatial_kernel) with their space hashes."""
    from nas_attn.space import load_space
    from nas_attn.yamlio import load_yaml

    return [{"file": p.name, "space": load_yaml(p), "hash": load_space(p).hash}
            for p in sorted((checkout / "search_spaces").glob("*.yaml"))]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "hashes.json").write_text(json.dumps(hash_cases(), indent=1) + "\n")
    checkout = Path(nas_attn.__file__).parents[1]
    (out / "space_hashes.json").write_text(json.dumps(space_hash_cases(checkout), indent=1)
                                           + "\n")
    for name, spec in BUNDLES.items():
        torch.manual_seed(0)
        model = build_model(spec).eval()
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = model(x)
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        export_bundle(spec, model, target, metadata={"notes": "seeded init, untrained"},
                      input_size=(3, 16, 16))
        save_file({"input": x, "output": y}, str(target / "io.safetensors"))

    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import run_search

    work = out / "_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "study.yaml").write_text(STUDY)
    setup = setup_from_study_file(work / "study.yaml")
    s = run_search(setup, out=work / "run", quiet=True, num_cpus=2)
    print("search:", s.status, s.finished, s.complete)
    shutil.rmtree(out / "run", ignore_errors=True)
    shutil.copytree(work / "run", out / "run", ignore=shutil.ignore_patterns("ray", "exports"))
    shutil.rmtree(work)
    print("nas_attn", nas_attn.__version__, "->", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

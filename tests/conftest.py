"""Shared fixtures. Tests are fast by default (tiny tensors, tiny data); tests that start Ray,
a browser or PostgreSQL are marked (see pyproject.toml) and still run in CI. Tests marked
``cuda`` are skipped, with the reason, where torch sees no CUDA device."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True)
def _torch_seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device (torch {torch.__version__}: "
                                   "torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)

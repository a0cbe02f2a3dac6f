"""Shared fixtures. Tests are fast by default (tiny tensors, tiny data); tests that start Ray,
a browser or PostgreSQL are marked (see pyproject.toml) and still run in CI."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True)
def _torch_seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield

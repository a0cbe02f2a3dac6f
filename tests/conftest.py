"""Shared fixtures. Tests are fast by default (tiny tensors, tiny data); tests that start Ray,
a browser or PostgreSQL are marked (see pyproject.toml) and still run in CI. Tests marked
``cuda`` are skipped, with the reason, where torch sees no CUDA device."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
PG_PORT = os.environ.get("NAS_ATTN_PG_PORT", "55432")
PG_SERVER = f"postgresql://nasattn:nasattn@127.0.0.1:{PG_PORT}"
PG_ADMIN_DB = "nas_attn_test"


@pytest.fixture(autouse=True)
def _torch_seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (no Optuna tables) on the server the test setup starts
    (scripts/setup.d/20-postgres.sh); dropped afterwards."""
    import sqlalchemy

    from nas_attn.search.storage import with_driver

    admin = sqlalchemy.create_engine(with_driver(f"{PG_SERVER}/{PG_ADMIN_DB}"),
                                     isolation_level="AUTOCOMMIT",
                                     poolclass=sqlalchemy.pool.NullPool)
    name = f"nasattn_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # the server is part of the test setup: fail, do not skip
        pytest.fail(f"cannot create a database at 127.0.0.1:{PG_PORT} ({e}); "
                    "run: bash scripts/setup.d/20-postgres.sh")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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


@pytest.fixture
def without_session_plugins() -> Iterator[None]:
    """Plugins that earlier tests of this pytest process loaded (a factory backbone's file, a
    bundle's models) set aside while a test runs Ray in-process: the execution layer ships every
    loaded plugin to the workers and asks for consent first, which such a test never gave."""
    from nas_attn import plugins as P

    before = dict(P._LOADED)
    P._LOADED.clear()
    yield
    P._LOADED.update(before)

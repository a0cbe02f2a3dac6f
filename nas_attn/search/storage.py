"""Optuna storage: where the study lives, and the source of truth of every run.

Default: an SQLite file ``study.db`` in the run folder, opened through
``optuna.storages.RDBStorage`` with a long lock timeout. Only the driver writes to it (workers
report through Ray), SQLite commits are atomic, so a driver killed with ``kill -9`` leaves a
consistent database whose only debris is trials in state RUNNING, which
:func:`nas_attn.search.runner.reconcile` marks FAIL/orphaned. ``--storage postgresql://...``
lets several drivers share one study. JournalStorage was not chosen: it is not queryable by
other tools and needs its own lock handling on network file systems.

Credentials in a storage URL are never written to the run folder: :func:`redact` replaces the
password with ``***`` and resume takes the real URL from ``--storage`` or ``NAS_ATTN_STORAGE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nas_attn.errors import ConfigError

DB_NAME = "study.db"
ENV_STORAGE = "NAS_ATTN_STORAGE"
SQLITE_TIMEOUT_S = 60
SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql",
           "mysql+pymysql")


def default_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / DB_NAME).resolve()}"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (pure)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_redacted(url: str) -> bool:
    return urlsplit(url).password == "***"


def validate_url(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError("--storage", redact(url), "unsupported storage URL scheme",
                          [f"{s}://..." for s in SCHEMES])
    return url


def open_storage(url: str) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url`` (SQLite gets a long lock timeout)."""
    import optuna

    validate_url(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    try:
        return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=kwargs)
    except ImportError as e:
        raise ConfigError("--storage", redact(url), f"database driver missing ({e}); "
                          "for PostgreSQL install nas-attn[postgres]") from None
    except Exception as e:  # connection refused, bad credentials, ...
        raise ConfigError("--storage", redact(url), f"cannot open the storage: {e}") from None


def with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while ``nas-attn[postgres]``
    installs psycopg2 (binary wheels everywhere); a bare URL uses psycopg 3 when it is
    installed and psycopg2 otherwise. An explicit ``postgresql+DRIVER://`` is kept.
    """
    import importlib.util

    scheme = urlsplit(url).scheme
    if scheme != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2" + url[len(scheme):]
    return url


def url_from_env(default: str | None = None) -> str | None:
    return os.environ.get(ENV_STORAGE) or default

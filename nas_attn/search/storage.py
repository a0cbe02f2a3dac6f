"""Optuna storage: where the study lives, and the source of truth of every run.

Default: an SQLite file ``study.db`` in the run folder, opened through
``optuna.storages.RDBStorage`` with a long lock timeout. Only the driver writes to it (workers
report through Ray), SQLite commits are atomic, so a driver killed with ``kill -9`` leaves a
consistent database whose only debris is trials in state RUNNING, which
:func:`nas_attn.search.runner.reconcile` marks FAIL/orphaned. ``--storage postgresql://...``
lets several drivers share one study. JournalStorage was not chosen: it is not queryable by
other tools and needs its own lock handling on network file systems.

Opening a storage is safe when many drivers start together on a database without tables:
Optuna creates its schema (tables, PostgreSQL enum types, the version rows) in every process
that connects, and on an empty PostgreSQL database two drivers doing so at once collide
(``UniqueViolation ... CREATE TYPE studydirection``). :func:`open_storage` therefore builds the
``RDBStorage`` under a lock when the schema is not complete yet (:func:`schema_ready`; opening
an existing schema takes no lock): a PostgreSQL advisory lock (:data:`SCHEMA_LOCK_KEY`), a file lock
next to an SQLite file, and for other databases retries on the integrity or programming error
a lost race raises (:data:`SCHEMA_RETRIES`).

Credentials in a storage URL are never written to the run folder: :func:`redact` replaces the
password with ``***`` and resume takes the real URL from ``--storage`` or ``NAS_ATTN_STORAGE``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nas_attn.errors import ConfigError

DB_NAME = "study.db"
ENV_STORAGE = "NAS_ATTN_STORAGE"
SQLITE_TIMEOUT_S = 60
SCHEMA_LOCK_KEY = 0x6E61735F61  # PostgreSQL advisory lock held while Optuna creates its schema
SCHEMA_RETRIES = 5  # other databases: attempts when a concurrent driver wins the schema race
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
    """An ``optuna.storages.RDBStorage`` for ``url`` (SQLite gets a long lock timeout), its
    schema created under a lock when the database is new (see the module docstring)."""
    import optuna

    validate_url(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    def create() -> Any:
        return _create_with_retries(
            lambda: optuna.storages.RDBStorage(with_driver(url), engine_kwargs=kwargs))

    try:
        if not schema_ready(with_driver(url), kwargs):
            with schema_lock(with_driver(url)):
                if not schema_ready(with_driver(url), kwargs):  # still not: this one creates
                    return create()
        return create()  # outside the lock: drivers opening an existing schema run in parallel
    except ImportError as e:
        raise ConfigError("--storage", redact(url), f"database driver missing ({e}); "
                          "for PostgreSQL install nas-attn[postgres]") from None
    except Exception as e:  # connection refused, bad credentials, ...
        raise ConfigError("--storage", redact(url), f"cannot open the storage: {e}") from None


def _create_with_retries(create: Any, attempts: int = SCHEMA_RETRIES) -> Any:
    """``create()``, again after a short random pause when it lost a schema-creation race (an
    integrity or programming error from SQLAlchemy); the last error is raised."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return create()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    raise AssertionError("unreachable")


def schema_ready(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """Whether Optuna's schema is complete in ``url``'s database: alembic's revision, the last
    thing ``RDBStorage`` writes when it creates the schema, is stamped."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **engine_kwargs)
    try:
        with engine.connect() as con:
            if not sqlalchemy.inspect(con).has_table("alembic_version"):
                return False
            n = con.execute(sqlalchemy.text("SELECT count(*) FROM alembic_version")).scalar()
            return bool(n)
    finally:
        engine.dispose()


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Serialise schema creation across processes: a PostgreSQL advisory lock (released with
    its connection), ``flock`` on ``<file>.lock`` beside an SQLite file, nothing otherwise."""
    scheme = urlsplit(url).scheme
    if scheme.startswith("postgresql"):
        with _pg_advisory_lock(url):
            yield
        return
    path = sqlite_path(url)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_advisory_lock(url: str) -> Iterator[None]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            con.commit()
            try:
                yield
            finally:
                con.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                            {"k": SCHEMA_LOCK_KEY})
                con.commit()
    finally:
        engine.dispose()


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///PATH`` URL (pure); None for in-memory or other databases."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


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

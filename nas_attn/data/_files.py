"""File helpers for datasets read from disk: a restricted unpickler, download with checksum."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from nas_attn.errors import ConfigError


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch needs nothing more, and
    refusing every other global means a tampered file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct", "scalar"
        ):
            from numpy._core import multiarray

            return getattr(multiarray, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            import copyreg

            return copyreg._reconstructor  # type: ignore[attr-defined]
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles from Python 3
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: Path, field: str, expected: str) -> Any:
    if not path.is_file():
        raise ConfigError(field, str(path), f"missing file; expected {expected}")
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except Exception as e:
        raise ConfigError(field, str(path),
                          f"cannot read ({type(e).__name__}: {e}); expected {expected}") from None


def md5sum(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def download_and_extract(url: str, md5: str, root: Path, timeout: float = 30.0) -> None:
    """Fetch the archive at ``url`` into ``root``, check its md5 and extract it there.

    Every failure (no network, bad checksum, bad archive) is a ConfigError on ``data.download``
    that says where to place the files by hand instead.
    """
    root.mkdir(parents=True, exist_ok=True)
    archive = root / url.rsplit("/", 1)[-1]
    hint = f"download it yourself and extract it into {root}"
    if not archive.is_file() or md5sum(archive) != md5:
        part = archive.with_name(archive.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, part.open("wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        except Exception as e:
            part.unlink(missing_ok=True)
            raise ConfigError("data.download", url,
                              f"download failed ({type(e).__name__}: {e}); {hint}") from None
        got = md5sum(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise ConfigError("data.download", url, f"md5 {got} does not match {md5}; {hint}")
        part.replace(archive)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    except Exception as e:
        raise ConfigError("data.download", str(archive),
                          f"cannot extract ({type(e).__name__}: {e}); {hint}") from None

"""Plugins: the one place nas-attn imports user code.

A plugin is a Python file (``path/to/my_attn.py``), an importable module or package
(``my_pkg.attn``), or an entry point of group ``nas_attn.plugins`` of an installed distribution.
Importing it runs its ``@register_module(...)`` (or ``register_backbone``) decorators, so its
names join the zoo's registries.

User code runs only with consent (``--allow-plugins`` or ``NAS_ATTN_ALLOW_PLUGINS=1``): without
it every function here refuses before anything is imported, naming the plugin and the flag.
Entry points are listed without importing (:func:`entry_points`) and loaded only when allowed.

A file plugin is imported under its file's stem as module name (``my_attn``), the name it has on
a Ray worker, where the file arrives through the runtime environment's ``py_modules``
(:func:`ray_py_modules`); a module plugin ships its top-level package. Each :class:`Plugin`
carries a SHA-256 of its source (the file, or every ``.py`` of the package), which joins the
study fingerprint, so an edited plugin is detected on resume.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.registry import all_registries

ALLOW_FLAG = "--allow-plugins"
ALLOW_ENV = "NAS_ATTN_ALLOW_PLUGINS"
ENTRY_POINT_GROUP = "nas_attn.plugins"
CONSENT_HINT = f"user code runs only with consent: pass {ALLOW_FLAG} or set {ALLOW_ENV}=1"


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin.

    ``ref`` is how it was named, ``module`` its import name, ``origin`` its file or package
    folder, ``ship`` what Ray's ``py_modules`` sends to workers (the file, or the top-level
    package folder), ``sha256`` the hash of its source and ``registered`` the names it added
    (``"attention module 'foo'"``).
    """

    ref: str
    module: str
    origin: str
    ship: str
    sha256: str
    registered: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["registered"] = list(self.registered)
        return d


@dataclass(frozen=True)
class EntryPointInfo:
    """An entry point of group ``nas_attn.plugins``, read from metadata (nothing imported)."""

    name: str
    value: str
    distribution: str


_LOADED: dict[str, Plugin] = {}  # import name -> plugin, so loading twice imports once
_CONSENT: list[bool] = [False]  # granted by the command line (--allow-plugins) for the process


def consent_from_env() -> bool:
    """Whether ``NAS_ATTN_ALLOW_PLUGINS`` grants consent (1, true, yes, on)."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def consented() -> bool:
    """Consent for this process: granted by :func:`activate` (``--allow-plugins``) or by the
    environment variable. Study files read later (their ``plugins:``) use it."""
    return _CONSENT[0] or consent_from_env()


def activate(refs: Sequence[str] = (), *, allow: bool = False) -> list[Plugin]:
    """What a command does first: decide consent (``allow`` or the environment variable), load
    the installed entry points when allowed, then the plugins named on the command line
    (refused without consent, before anything is imported). Returns what it loaded."""
    allowed = allow or consent_from_env()
    require_consent(refs, allowed, "--plugin")
    _CONSENT[0] = allowed
    return [*load_entry_points(allowed=allowed),
            *(load_plugin(r, allowed=True, field="--plugin") for r in refs)]


def require_consent(refs: Iterable[str], allowed: bool, field: str = "plugins") -> None:
    """Refuse (before importing anything) when plugins are named without consent."""
    refs = list(refs)
    if refs and not allowed:
        raise ConfigError(field, refs[0] if len(refs) == 1 else refs, CONSENT_HINT)


def is_file_ref(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def import_ref(ref: str, *, allowed: bool, field: str = "plugins") -> object:
    """The object ``ref`` names: ``"pkg.mod:attr"`` or ``"path/to/file.py:attr"`` (without
    ``:attr``, the module itself). Refused without consent before importing anything."""
    require_consent([ref], allowed, field)
    target, _, attr = ref.partition(":") if not _has_drive(ref) else _split_drive(ref)
    plugin = load_plugin(target, allowed=True, field=field)
    module = sys.modules[plugin.module]
    if not attr:
        return module
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            raise ConfigError(field, ref, f"{plugin.origin} has no attribute {attr!r}", names)
        obj = getattr(obj, part)
    return obj


def _has_drive(ref: str) -> bool:  # "C:\\x.py:attr" on Windows
    return len(ref) > 2 and ref[1] == ":" and ref[0].isalpha() and ref[2] in "\\/"


def _split_drive(ref: str) -> tuple[str, str, str]:
    head, sep, attr = ref[2:].partition(":")
    return ref[:2] + head, sep, attr


def load_plugins(refs: Sequence[str], *, allowed: bool, field: str = "plugins") -> list[Plugin]:
    """Load every plugin of ``refs`` (files or modules), refusing all of them without consent
    before the first import."""
    require_consent(refs, allowed, field)
    return [load_plugin(ref, allowed=True, field=f"{field}[{i}]") for i, ref in enumerate(refs)]


def load_plugin(target: str, *, allowed: bool, field: str = "plugins") -> Plugin:
    """Import one plugin (a file path or a dotted module name) once; a second call returns the
    same plugin with its source hash read again (an edited file shows a new hash)."""
    require_consent([target], allowed, field)
    if is_file_ref(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(field, target, "plugin file not found")
        if path.suffix != ".py":
            raise ConfigError(field, target, "a plugin file must be a .py file")
        name = path.stem
        if not name.isidentifier():
            raise ConfigError(field, target, "the file's name must be a Python identifier "
                              "(it is the plugin's module name on every worker)")
        known = sys.modules.get(name)
        if known is not None and _file_of(known) != path:
            raise ConfigError(field, target, f"its module name {name!r} is already taken by "
                              f"{_file_of(known) or known!r}; rename the file")
        return _import(target, name, field, path)
    if not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(field, target, "expected a .py file or a dotted module name "
                          "(my_pkg.attn)")
    return _import(target, target, field, None)


def _file_of(module: ModuleType) -> Path | None:
    f = getattr(module, "__file__", None)
    return Path(f).resolve() if f else None


def _import(ref: str, name: str, field: str, path: Path | None) -> Plugin:
    if name in _LOADED:
        old = _LOADED[name]
        return replace(old, ref=ref, sha256=source_sha256(old.ship))
    before = _registered_names()
    try:
        if path is not None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(name)
    except ConfigError as e:  # a name the zoo already has, a bad registration
        _forget_registrations(before)
        raise ConfigError(field, ref, f"{e}{_where(e, path, name)}") from None
    except ModuleNotFoundError as e:
        _forget_registrations(before)
        if path is None and e.name is not None and (name + ".").startswith(e.name + "."):
            raise ConfigError(field, ref, "no such plugin file or module") from None
        raise ConfigError(field, ref, f"fails to import{_where(e, path, name)}: "
                          f"{type(e).__name__}: {e}") from None
    except Exception as e:
        _forget_registrations(before)
        raise ConfigError(field, ref, f"fails to import{_where(e, path, name)}: "
                          f"{type(e).__name__}: {e}") from None
    ship = _ship_path(module)
    added = tuple(sorted(_registered_names() - before))
    plugin = Plugin(ref, name, str(_file_of(module) if path is not None else
                                   Path(ship)), ship, source_sha256(ship), added)
    _LOADED[name] = plugin
    return plugin


def _where(e: BaseException, path: Path | None, name: str) -> str:
    """`` at FILE:LINE`` of the error: the syntax error's line, else the deepest frame in the
    plugin's own source (the file, or its package), else the deepest frame."""
    if isinstance(e, SyntaxError) and e.filename:
        return f" at {e.filename}:{e.lineno}"
    frames = traceback.extract_tb(e.__traceback__)
    root = str(path) if path is not None else None
    if root is None:
        spec = importlib.util.find_spec(name.split(".")[0]) if _findable(name) else None
        origin = spec.origin if spec is not None else None
        root = str(Path(origin).parent) if origin and origin.endswith("__init__.py") else origin
    own = [f for f in frames if root and f.filename.startswith(root)]
    frame = (own or [f for f in frames if "importlib" not in f.filename] or frames or [None])[-1]
    return f" at {frame.filename}:{frame.lineno}" if frame is not None else ""


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _ship_path(module: ModuleType) -> str:
    """What a worker needs to import ``module``: its top-level package's folder, or the file of
    a single-file top-level module."""
    top = sys.modules[module.__name__.split(".")[0]]
    paths = list(getattr(top, "__path__", []))
    if paths:
        return str(Path(paths[0]).resolve())
    f = _file_of(top)
    if f is None:
        raise ConfigError("plugins", module.__name__, "a built-in module cannot be a plugin")
    return str(f)


def source_sha256(ship: str | Path) -> str:
    """SHA-256 of a plugin's source: the file's bytes, or every ``.py`` under a package folder
    (relative path and bytes, sorted by path)."""
    p = Path(ship)
    h = hashlib.sha256()
    if p.is_file():
        h.update(p.read_bytes())
        return h.hexdigest()
    for f in sorted(p.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        h.update(f.relative_to(p).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _registered_names() -> set[str]:
    return {f"{reg.name} {key!r}" for reg in all_registries() for key in reg}


def _forget_registrations(before: set[str]) -> None:
    """Undo what a plugin that failed to import had registered already."""
    for reg in all_registries():
        for key in list(reg):
            if f"{reg.name} {key!r}" not in before:
                reg.unregister(key)


def unload(plugin: Plugin) -> None:
    """Remove a plugin's registrations and its module (tests; a plugin edited in a session)."""
    for reg in all_registries():
        for key in list(reg):
            if f"{reg.name} {key!r}" in plugin.registered:
                reg.unregister(key)
    _LOADED.pop(plugin.module, None)
    for name in [n for n in sys.modules if n == plugin.module or
                 n.startswith(plugin.module + ".")]:
        del sys.modules[name]


def loaded_plugins() -> list[Plugin]:
    """Every plugin loaded in this process, in load order, each with its source hash read
    again (what a worker is sent, and what the fingerprint records)."""
    return [replace(p, sha256=source_sha256(p.ship)) for p in _LOADED.values()]


def entry_points() -> list[EntryPointInfo]:
    """The installed entry points of group ``nas_attn.plugins``, read from the distributions'
    metadata: nothing is imported."""
    from importlib.metadata import entry_points as eps

    found = []
    for ep in eps(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.append(EntryPointInfo(ep.name, ep.value, dist.name if dist is not None else "?"))
    return sorted(found, key=lambda e: e.name)


def load_entry_points(*, allowed: bool) -> list[Plugin]:
    """Load every installed entry point of the group; none without consent (nothing imported,
    no error: an installed distribution is not a request to run it)."""
    if not allowed:
        return []
    plugins = []
    for ep in entry_points():
        plugins.append(load_plugin(ep.value.partition(":")[0].strip(), allowed=True,
                                   field=f"entry point {ep.name} ({ep.distribution})"))
    return plugins


def ray_py_modules(plugins: Iterable[Plugin]) -> list[str]:
    """The ``py_modules`` of Ray's runtime environment that bring these plugins to every
    worker on every node (each file or package folder once)."""
    return sorted({p.ship for p in plugins})


def load_shipped(plugins: Iterable[Plugin | dict[str, Any]]) -> list[Plugin]:
    """On a worker: import the plugins the driver loaded (consent was decided there), by module
    name from what the runtime environment shipped, and check the source is the driver's."""
    loaded = []
    for p in plugins:
        p = p if isinstance(p, Plugin) else Plugin(**{**p, "registered": tuple(p["registered"])})
        got = load_plugin(p.module, allowed=True, field=f"plugin {p.ref}")
        if got.sha256 != p.sha256:
            raise ConfigError(f"plugin {p.ref}", got.origin, "the worker's source differs "
                              f"from the driver's (sha256 {got.sha256[:12]} vs {p.sha256[:12]})")
        loaded.append(got)
    return loaded


def fingerprint_entry(plugins: Iterable[Plugin]) -> list[dict[str, str]]:
    """What a plugin contributes to a study fingerprint: its module name and source hash."""
    return [{"module": p.module, "sha256": p.sha256} for p in plugins]

"""The attention zoo. Importing this package registers every module family.

One family per file (``se.py``, ``eca.py``, ...); each file registers its modules with
``@register_module("name", ...)``, so the registry's keys are written where the module is.
"""

import importlib
import pkgutil

from nas_attn.modules._registry import (
    MODULES,
    ModuleEntry,
    create_module,
    get_module,
    module_names,
    register_module,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["MODULES", "ModuleEntry", "create_module", "get_module", "module_names", "register_module"]

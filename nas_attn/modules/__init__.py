"""The attention zoo. Importing this package registers every module family.

One family per file (``se.py``, ``eca.py``, ...); each file registers its modules with
``@register_module("name", ...)``, so the registry's keys are written where the module is.
"""

from nas_attn._imports import import_family_files
from nas_attn.modules._registry import (
    MODULES,
    ModuleEntry,
    create_module,
    get_module,
    module_names,
    register_module,
)

import_family_files(__name__, __path__)

__all__ = ["MODULES", "ModuleEntry", "create_module", "get_module", "module_names", "register_module"]

"""Safe YAML reading with file-and-line errors.

Every YAML file nas-attn reads goes through :func:`load_yaml`: a safe loader (a tag that would
construct a Python object is rejected, never run) and a ConfigError that names the file and line
of a syntax error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nas_attn.errors import ConfigError


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), None, "file not found")
    if path.is_dir():
        raise ConfigError(str(path), None, "is a folder, expected a YAML or JSON file")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}", None, f"JSON syntax error: {e.msg}") from None
    return loads_yaml(text, str(path))


def loads_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise ConfigError(f"{source}:{line}", None,
                          f"unsupported YAML tag ({e.problem}); only plain data is allowed") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{source}:{line}", None, f"YAML syntax error: {problem}") from None

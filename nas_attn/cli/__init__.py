"""The ``nas-attn`` command line: a thin shell over the library.

Each command lives in its own module under ``nas_attn/cli/`` and registers itself on ``app``
with ``@app.command()``; heavy imports stay inside the command functions so ``nas-attn --help``
is fast. Errors the user can fix (:class:`~nas_attn.errors.ConfigError`) print one clear line and
exit with status 2; nothing is written in that case.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="nas-attn",
    help="Find out, with evidence, which attention module belongs where in a CNN.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def main(argv: list[str] | None = None) -> int:
    from nas_attn.errors import NasAttnError

    _load_commands()
    try:
        # with standalone_mode=False click returns a command's ``typer.Exit(code)`` code
        # instead of raising it (typer 0.29 and click 8); None when a command just returns
        code = app(args=argv if argv is not None else sys.argv[1:], standalone_mode=False)
    except NasAttnError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:  # older click raised it
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # usage errors (missing argument, bad option value, ...)
        if _is_click_exception(e):
            e.show()
            return e.exit_code
        raise
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _is_click_exception(e: BaseException) -> bool:
    """Typer 0.29 vendors its own copy of click; accept either copy's ClickException."""
    classes: list[type] = []
    for mod in ("click.exceptions", "typer._click.exceptions"):
        try:
            classes.append(importlib.import_module(mod).ClickException)
        except (ImportError, AttributeError):
            pass
    return isinstance(e, tuple(classes))


if __name__ == "__main__":
    sys.exit(main())

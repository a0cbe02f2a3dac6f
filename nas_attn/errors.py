"""Error types shared by every layer of nas-attn.

Every user-facing error names the field, shows the bad value and lists the valid choices, so a
user can fix the input without reading the code (the Optuna convention).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class NasAttnError(Exception):
    """Base class of every error nas-attn raises on purpose."""


class ConfigError(NasAttnError, ValueError):
    """Bad user input: a spec, a search space, a study file, a CLI argument.

    ``field`` is a dotted path to the offending entry (``stages[2].attention.rd_ratio``),
    ``value`` the bad value and ``choices`` what would have been accepted.
    """

    def __init__(
        self,
        field: str,
        value: Any = None,
        reason: str = "",
        choices: Iterable[Any] | str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.choices = list(choices) if choices is not None and not isinstance(choices, str) else choices
        parts = [f"{field}: {reason}" if reason else f"{field}: invalid value"]
        if value is not None:
            parts.append(f"got {value!r}")
        if choices is not None:
            shown = choices if isinstance(choices, str) else ", ".join(repr(c) for c in self.choices)
            parts.append(f"valid: {shown}")
        super().__init__("; ".join(parts))


class SpecError(ConfigError):
    """An architecture spec that cannot be built (impossible combination, unknown name...)."""


class TrialError(NasAttnError):
    """A trial that failed in a way the search runner records and survives.

    ``reason`` is one of the fixed fail reasons listed in ``FAIL_REASONS``.
    """

    FAIL_REASONS = ("nonfinite", "oom", "error", "over_budget", "orphaned", "missing_metric")

    def __init__(self, reason: str, message: str = "") -> None:
        if reason not in self.FAIL_REASONS:
            raise ValueError(f"reason: got {reason!r}; valid: {', '.join(self.FAIL_REASONS)}")
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}" if message else reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable across processes (Ray workers): rebuild from reason and message, not args
        return (_rebuild_trial_error, (type(self), self.reason, self.message))


def _rebuild_trial_error(cls: type[TrialError], reason: str, message: str) -> TrialError:
    err = cls.__new__(cls)
    TrialError.__init__(err, reason, message)
    return err


class NonFiniteLossError(TrialError):
    def __init__(self, message: str = "") -> None:
        super().__init__("nonfinite", message)


class OutOfMemoryError(TrialError):
    def __init__(self, message: str = "") -> None:
        super().__init__("oom", message)

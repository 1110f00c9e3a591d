"""Config problems as one line a user can act on: `<config file>: <field>: <reason>`.

pydantic's own report spans several lines per error, names no file and puts the field path
on a line of its own; YAML's names a position over three lines. Both are turned into the
same one-line form here, so `prefgen` can print it as it is (see `cli.main`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

# The most problems one message lists; the rest are counted.
SHOWN_PROBLEMS = 3
_SCALARS = (str, int, float, bool, type(None))


class ConfigError(ValueError):
    """A config file that cannot be used. `problems` holds (field path or None, reason); the
    message is one line: the file, then each problem as `field: reason`, joined by "; "."""

    def __init__(self, file: str | Path, problems: Sequence[tuple[str | None, str]]) -> None:
        self.file = str(file)
        self.problems = [(field, _one_line(reason)) for field, reason in problems]
        shown = [
            f"{field}: {reason}" if field else reason
            for field, reason in self.problems[:SHOWN_PROBLEMS]
        ]
        more = len(self.problems) - SHOWN_PROBLEMS
        message = "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
        super().__init__(f"{self.file}: {message}")

    @classmethod
    def single(cls, file: str | Path, reason: str, field: str | None = None) -> ConfigError:
        return cls(file, [(field, reason)])


def from_validation(file: str | Path, error: ValidationError) -> ConfigError:
    """pydantic's errors, each with its dotted field path (`models.judge.base_urls.0`)."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or None
        problems.append((field, _reason(item)))
    return ConfigError(file, problems)


def _reason(item: Any) -> str:
    kind = item["type"]
    if kind == "missing":
        return "required, but not set"
    if kind == "extra_forbidden":
        return "not a known setting (misspelt, or in the wrong section?)"
    # A ValueError raised by one of our validators: its text is the reason.
    reason = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    if kind != "value_error" and isinstance(value, _SCALARS):
        reason += f" (got {_clip(repr(value))})"
    return reason


def from_yaml(file: str | Path, error: yaml.YAMLError) -> ConfigError:
    """A YAML syntax error at its line and column (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    reason = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
    return ConfigError.single(file, reason, where)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

"""The pipeline's stages: one registry that the assets, the storage, the SQL layer, the code
versions, the cost estimate and the CLI read, so a stage's name, tables and code are written
once.

A stage's rows depend on two things, and its code version holds both: its code (every
module of its package and the modules of the shared layers it imports, see `stage_modules`
and `ids.source_version`) and its settings (its section of the config and the models it
calls, see `settings_hash`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.ids import source_version, stable_hash

# The config sections whose settings shape rows, in pipeline order (`pairing` shapes the SQL
# models, whose versions come from their SQL text and the vars it reads).
Section = Literal["input", "generation", "evol_quality", "judge", "pairing"]
SECTIONS: tuple[Section, ...] = ("input", "generation", "evol_quality", "judge", "pairing")


@dataclass(frozen=True)
class Stage:
    """A Python stage, by two names: what it does, which is its config section and its
    folder (`prefgen_dagster/<section>/`: prompts, schemas, parsers, planners, its part of the
    loop), and what it makes, which is its main table and the Dagster asset that writes it."""

    section: Section
    # The tables it writes for a batch; the first is its main one and names its asset.
    tables: tuple[str, ...]
    # Where its key columns come from, for column lineage in the UI (SQL models get theirs
    # from sqlglot): column -> [(asset, column), ...].
    column_sources: dict[str, list[tuple[str, str]]]
    # Its package, dotted, when it lives outside prefgen's own folders (a plugin, a test's).
    home: str | None = None

    @property
    def table(self) -> str:
        return self.tables[0]

    @property
    def asset(self) -> str:
        return self.tables[0]

    @property
    def package(self) -> str:
        return self.home or f"prefgen_dagster.{self.section}"

    def code_version(self, config: PipelineConfig) -> str:
        modules = stage_modules(self.package)
        return f"{source_version(self.asset, *modules)}+{settings_hash(config, self.section)}"


# The layers every stage builds on: what a stage imports from them shapes its rows too.
SHARED_LAYERS = ("llm", "text")


@cache
def stage_modules(package: str) -> tuple[ModuleType, ...]:
    """Every module of `package`, and every module of prefgen's shared layers that they
    import (directly or through each other), by name: a module added to a stage's folder,
    or a shared one it starts to use, is part of its code version."""
    root = importlib.import_module(package)
    names = [f"{root.__name__}.{info.name}" for info in pkgutil.iter_modules(root.__path__)]
    todo, seen = list(names), set(names)
    while todo:
        for imported in _imports(importlib.import_module(todo.pop())):
            parts = imported.split(".")
            shared = parts[0] == "prefgen_dagster" and len(parts) > 2 and parts[1] in SHARED_LAYERS
            if shared and imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return tuple(importlib.import_module(name) for name in sorted(seen))


def _imports(module: ModuleType) -> set[str]:
    """The modules `module` imports by absolute name (`from a.b import c` counts a.b.c
    when that is a module, else a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if _is_module(name) else node.module)
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package
        return False


INPUT = Stage("input", ("instructions", "batches", "rejected_inputs"), {})
GENERATION = Stage(
    "generation",
    ("completions",),
    {
        "instruction_id": [("instructions", "instruction_id")],
        "system_prompt": [("instructions", "system_prompt")],
    },
)
EVOL_QUALITY = Stage(
    "evol_quality",
    ("evolved_completions",),
    {
        "instruction_id": [("completions", "instruction_id")],
        "parent_completion_id": [("completions", "completion_id")],
        "root_completion_id": [("completions", "completion_id")],
    },
)
JUDGE = Stage(
    "judge",
    ("ratings", "canaries", "judge_calibration"),
    {
        "completion_id": [("candidates", "completion_id")],
        "instruction_id": [("candidates", "instruction_id")],
    },
)
STAGES: tuple[Stage, ...] = (INPUT, GENERATION, EVOL_QUALITY, JUDGE)
BY_ASSET = {stage.asset: stage for stage in STAGES}
STAGE_TABLES = tuple(table for stage in STAGES for table in stage.tables)
# Tables people fill, not a stage: every annotator's verdict on a reviewed pair, written by
# the review pull (`prefgen_dagster/review/`). The SQL models read each one through the input
# asset of the same name (`defs/verdicts.py`), so a new verdict re-runs the models that read it.
INPUT_TABLES = ("human_verdicts",)


def asset_of(table: str) -> str:
    """The asset that writes a table: the Python stage that writes it among its tables, else
    the asset of the table's own name (a SQL model's, an input's)."""
    return next((stage.asset for stage in STAGES if table in stage.tables), table)


def section_models(config: PipelineConfig, section: Section) -> list[str]:
    """The models a section's stage calls (input counts tokens with the generation pool's)."""
    if section in ("input", "generation"):
        return sorted({member.model for member in config.generation.pool})
    if section == "evol_quality":
        return [config.evol_quality.model]
    if section == "judge":
        return config.judge_models()
    return []


def models_after(config: PipelineConfig, section: Section) -> set[str]:
    """The models that the stages after `section` call: the engines a run keeps after it."""
    later = SECTIONS[SECTIONS.index(section) + 1 :]
    return {name for later_section in later for name in section_models(config, later_section)}


def settings_hash(config: PipelineConfig, section: Section) -> str:
    """Hash of the settings one stage's own output depends on: its part of the config and
    the models it calls. What it reads from earlier stages is left out (Dagster follows that
    through data versions; `pipeline_hash` covers every stage)."""
    settings: Any
    if section == "input":
        # Whether an instruction fits the pool's context (see `input/context.py`).
        settings = {
            "input": config.input.model_dump(mode="json", exclude={"datasets"}),
            "pool": [
                [member.model, member.sampling.max_tokens, member.system_prompts()]
                for member in config.generation.pool
            ],
        }
    elif section == "generation":
        settings = [
            config.generation.model_dump(mode="json", exclude={"model_ranking"}),
            config.uses_embeddings(),
        ]
    elif section == "evol_quality":
        settings = [config.evol_quality.model_dump(mode="json"), config.uses_embeddings()]
    elif section == "judge":
        # Canaries come from the batch's finished, non-degenerate completions, and the
        # weaker_model kind reads the ranking.
        settings = {
            "judge": config.judge.model_dump(mode="json") if config.judge else None,
            "max_repetition": config.pairing.max_repetition,
            "model_ranking": config.ranked_identities(),
        }
    else:
        settings = config.pairing.model_dump(mode="json")
    models = {
        name: [config.models[name].path, config.models[name].max_model_len]
        for name in section_models(config, section)
    }
    return stable_hash([settings, models])


def pipeline_hash(config: PipelineConfig) -> str:
    """Changes whenever any setting that shapes the rows changes."""
    return stable_hash([settings_hash(config, section) for section in SECTIONS])

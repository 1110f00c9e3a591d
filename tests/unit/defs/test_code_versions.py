"""An asset's code version changes exactly when one of its own settings does, so Dagster's
"changed code version" / stale view and the automation condition point at the right assets."""

from __future__ import annotations

import copy
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.ids import source_version
from prefgen_dagster.stages import GENERATION, STAGES, stage_modules

Edit = Callable[[dict[str, Any]], None]

EDITS: dict[str, tuple[Edit, set[str]]] = {
    "judge aspects": (
        lambda c: c["judge"].update(aspects=["overall", "honesty"]),
        {"ratings"},
    ),
    "judge model's weights": (
        lambda c: c["models"]["tiny-llama"].update(path="./models/other-llama"),
        # tiny-llama is also a pool member, so the ingest token count and generation change.
        {"instructions", "completions", "ratings"},
    ),
    "a pool member's temperature": (
        lambda c: c["generation"]["pool"][0]["sampling"].update(temperature=0.3),
        {"completions"},
    ),
    "a pool member's max_tokens (room left for the prompt)": (
        lambda c: c["generation"]["pool"][0]["sampling"].update(max_tokens=64),
        {"instructions", "completions"},
    ),
    "the input column name": (
        lambda c: c.setdefault("input", {}).update(instruction_field="prompt"),
        {"instructions"},
    ),
    "EvolQuality criteria": (
        lambda c: c["evol_quality"].update(criteria=["deepening"]),
        {"evolved_completions"},
    ),
    "pairing strategy": (
        lambda c: c["pairing"].update(strategy="all_pairs"),
        {"candidate_pairs"},
    ),
    "pairing min_margin": (
        lambda c: c["pairing"].update(min_margin=2.0),
        # candidate_pairs marks the pairs it drops; dpo_pairs follows by its data version.
        {"candidate_pairs"},
    ),
    "a check threshold": (
        # A check is part of the asset it guards: the asset re-runs, and the check with it.
        lambda c: c.setdefault("checks", {}).update(max_length_bias=0.7),
        {"dpo_pairs"},
    ),
    "chunk size and a model's timeout (how, not what)": (
        lambda c: (
            c.setdefault("engine", {}).update(chunk_size=7),
            c["models"]["tiny-qwen2"].update(timeout_s=5.0),
        ),
        set(),
    ),
}


def code_versions(raw: dict[str, Any]) -> dict[str, str]:
    graph = build_graph(PipelineConfig.model_validate(raw))
    return {
        key.to_user_string(): version
        for asset in [*graph.batch_assets, graph.export_asset]
        for key, version in asset.code_versions_by_key.items()
    }


@pytest.mark.parametrize("edit_name", EDITS)
def test_an_edit_changes_the_code_version_of_exactly_the_assets_it_affects(
    edit_name: str,
) -> None:
    edit, affected = EDITS[edit_name]
    base = yaml.safe_load(TINY_CONFIG.read_text())
    changed = copy.deepcopy(base)
    edit(changed)
    before, after = code_versions(base), code_versions(changed)
    assert {asset for asset in before if before[asset] != after[asset]} == affected


def test_every_asset_has_a_code_version_naming_its_stage() -> None:
    versions = code_versions(yaml.safe_load(TINY_CONFIG.read_text()))
    assert all(versions.values())
    assert versions["ratings"].startswith("ratings-")
    assert versions["completions"].startswith("completions-")


def _module(path: Path, text: str) -> ModuleType:
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_versions_follow_the_template_text_not_its_comments(tmp_path: Path) -> None:
    """Nothing is bumped by hand: a changed prompt gives a new version, a comment or a
    docstring does not."""
    template = '"""Doc."""\nPROMPT = "Rate the response {x}."\n'
    base = source_version("t", _module(tmp_path / "a.py", template))
    reworded = _module(tmp_path / "b.py", template.replace("Rate", "Score"))
    commented = _module(tmp_path / "c.py", '"""Other doc."""\n# note\n' + template[10:])
    assert source_version("t", reworded) != base
    assert source_version("t", commented) == base


def test_a_stage_version_covers_its_whole_folder_and_the_shared_code_it_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stage in STAGES:  # every module in the stage's folder, by construction
        folder = Path(importlib.import_module(stage.package).__file__).parent
        names = {module.__name__ for module in stage_modules(stage.package)}
        assert {f"{stage.package}.{p.stem}" for p in folder.glob("[!_]*.py")} <= names
    generation = {module.__name__ for module in stage_modules(GENERATION.package)}
    assert {"prefgen_dagster.llm.plan", "prefgen_dagster.text.embeddings"} <= generation
    assert not any(name.startswith("prefgen_dagster.judge") for name in generation)
    # A new module in a stage's folder, and the shared module it starts to use, are in.
    package = tmp_path / "toy_folder"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("from toy_folder.helper import X\n")
    (package / "helper.py").write_text("from prefgen_dagster.llm.heap import frozen_heap\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = {module.__name__ for module in stage_modules("toy_folder")}
    assert names == {"toy_folder.helper", "toy_folder.stage", "prefgen_dagster.llm.heap"}

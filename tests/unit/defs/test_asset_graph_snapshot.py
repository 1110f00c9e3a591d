"""A snapshot of the asset graph: every asset's key, deps, partitions, group, kinds, owners,
tags, checks and what its code version is made of. A change to the graph shows up here as a diff to
review; regenerate with `UPDATE_SNAPSHOTS=1 pytest tests/unit/defs/test_asset_graph_snapshot.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.stages import BY_ASSET, INPUT_TABLES

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot() -> dict[str, Any]:
    graph = build_graph(PipelineConfig.model_validate(yaml.safe_load(TINY_CONFIG.read_text())))
    checks: dict[str, list[dict[str, Any]]] = {}
    for check_def in graph.checks:
        for spec in check_def.check_specs:
            checks.setdefault(spec.asset_key.to_user_string(), []).append(
                {
                    "name": spec.name,
                    "blocking": spec.blocking,
                    "reads": sorted(dep.asset_key.to_user_string() for dep in spec.additional_deps),
                }
            )
    assets = {}
    for definition in [*graph.batch_assets, graph.export_asset]:
        for spec in definition.specs:
            name = spec.key.to_user_string()
            stage = BY_ASSET.get(name)
            assets[name] = {
                "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
                "partitioned": spec.partitions_def is not None,
                "group": spec.group_name,
                "kinds": sorted(spec.kinds),
                "owners": list(spec.owners),
                # The kinds are listed above; their `dagster/kind/*` tags would repeat them.
                "tags": {k: v for k, v in spec.tags.items() if not k.startswith("dagster/")},
                # What the code version is derived from (its value moves with every edit).
                "code_version_from": (
                    {"package": stage.package, "settings": stage.section}
                    if stage
                    else "input asset code"
                    if name in INPUT_TABLES
                    else "export code"
                    if name == "preference_dataset"
                    else "sql text and vars"
                ),
                # Inputs (human verdicts) are materialized by runs and the review pull only.
                "automated": spec.automation_condition is not None,
                "has_code_version": bool(spec.code_version),
                "checks": sorted(checks.get(name, []), key=lambda c: c["name"]),
            }
    return dict(sorted(assets.items()))


def test_the_asset_graph_matches_its_snapshot() -> None:
    current = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))

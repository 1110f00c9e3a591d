"""`prefgen run` reads its config once and plans its batch once: the runs take the config it
loaded and the plan its estimate made (`pipeline_run.RunSetup`), and the check of the later
prompts' lengths reads that plan instead of planning again. The models are served over HTTP
by a `FaultServer` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefgen_dagster import config as config_module
from prefgen_dagster import cost
from prefgen_dagster.cli import main
from prefgen_dagster.defs import pipeline_run, resources
from tests.unit.http_pipeline import reply, write_http_config
from tests.unit.llm.fault_server import FaultServer

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(reply=reply) as running:
        yield running


def counted(calls: list[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return function(*args, **kwargs)

    return wrapper


def test_a_run_loads_its_config_once_and_plans_once(
    tmp_path: Path, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_http_config(tmp_path, server, ["Question 0?", "Question 1?"])
    batch = tmp_path / "two.jsonl"
    batch.write_text('{"instruction": "Why is the sky blue?"}\n{"instruction": "What is rain?"}\n')
    calls: list[str] = []
    # Every place that can load a config or plan a batch, by the name it calls.
    load = counted(calls, "load_config", config_module.load_config)
    for module in (config_module, resources, pipeline_run):
        monkeypatch.setattr(module, "load_config", load)
    plan = counted(calls, "plan_batch", cost.plan_batch)
    for module in (cost, resources):
        monkeypatch.setattr(module, "plan_batch", plan)

    assert main(["run", str(batch), "--config", str(config_path)]) == 0
    assert calls == ["load_config", "plan_batch"]

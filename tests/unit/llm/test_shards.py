"""Cutting a stage's requests into shards, and the files a worker leaves."""

from __future__ import annotations

from pathlib import Path

from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.llm.shards import (
    FINISHED,
    PARTIAL,
    ShardFiles,
    model_prefix,
    plan_shards,
    record,
    result_of,
    shard_name,
)
from prefgen_dagster.llm.types import LLMRequest, LLMResult


def requests(count: int, model: str = "m") -> list[LLMRequest]:
    return [
        LLMRequest(model, [{"role": "user", "content": f"q{i}"}], SamplingParams(), seed=i)
        for i in range(count)
    ]


def test_every_request_lands_in_one_shard_chosen_by_its_hash() -> None:
    asked = requests(100)
    shards = plan_shards(asked, 30)
    assert len(shards) <= 4  # ceil(100 / 30), empty ones dropped
    assert sorted(r.call_id for shard in shards for r in shard) == sorted(r.call_id for r in asked)
    # The same requests, in another order, are cut the same way (order kept within a shard).
    again = plan_shards(list(reversed(asked)), 30)
    assert sorted(map(shard_name, again)) == sorted(map(shard_name, shards))
    for shard in shards:
        assert shard == sorted(shard, key=asked.index)


def test_a_shard_name_depends_on_its_requests_and_model_only() -> None:
    asked = requests(5)
    assert shard_name(asked) == shard_name(list(reversed(asked)))
    assert shard_name(asked) != shard_name(asked[:4])
    assert shard_name(asked).startswith(model_prefix("m"))
    assert not shard_name(requests(5, "other")).startswith(model_prefix("m"))


def test_a_result_survives_the_shard_file(tmp_path: Path) -> None:
    files = ShardFiles(str(tmp_path / "shards"))
    answered = LLMResult("hi", "stop", 3, 1, 0.5)
    failed = LLMResult(None, error="PromptTooLong: too long", extra={"attempts": 1})
    files.finish("s1", [record("a", answered), record("b", failed)])
    rows = {row["call_id"]: result_of(row) for row in files.read("s1")}
    assert rows == {"a": answered, "b": failed}
    assert files.finished("s1")
    files.remove("s1")
    assert not files.finished("s1")
    assert list((tmp_path / "shards").iterdir()) == []


def test_a_lost_workers_journal_is_read_back_and_dropped_when_the_shard_finishes(
    tmp_path: Path,
) -> None:
    files = ShardFiles(str(tmp_path))
    with files.journal("s1") as journal:
        assert journal is not None
        journal.write('{"call_id": "a", "text": "x"}\n')
        journal.write('{"call_id": "b", "te')  # cut short by the kill
    assert set(files.journaled("s1")) == {"a"}
    files.finish("s1", [record("a", LLMResult("x"))])
    assert [path.name for path in tmp_path.iterdir()] == [f"s1{FINISHED}"]


def test_leftovers_are_a_models_finished_shards_and_journals(tmp_path: Path) -> None:
    files = ShardFiles(str(tmp_path))
    mine, other = model_prefix("m"), model_prefix("other")
    files.finish(f"{mine}done", [record("a", LLMResult("x"))])
    (tmp_path / f"{mine}lost{PARTIAL}").write_text(
        '{"call_id": "b", "text": "y", "finish_reason": null, "prompt_tokens": 1,'
        ' "completion_tokens": 1, "latency_s": 0.1, "error": null, "attempts": null}\n'
    )
    files.finish(f"{other}done", [record("c", LLMResult("z"))])
    assert sorted(row["call_id"] for row in files.leftovers(mine)) == ["a", "b"]


def test_an_fsspec_url_works_as_the_shard_folder() -> None:
    files = ShardFiles("memory://prefgen-shards")
    files.finish("s1", [record("a", LLMResult("x"))])
    assert [row["call_id"] for row in files.read("s1")] == ["a"]
    files.remove("s1")

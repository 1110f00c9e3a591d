"""Instructions from datasets (`input/datasets.py`), loaded by the `datasets` library from
local folders: a Hub-like repo with two configs and parquet shards in two splits, and what
`save_to_disk` wrote. A Hub name goes through the same code; offline and not cached, it is a
one-line error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.input import DatasetInput
from prefgen_dagster.input.datasets import (
    DatasetError,
    dataset_input,
    dataset_of,
    resolve,
    snapshot,
    watched_into_inbox,
)
from prefgen_dagster.input.read import read_rows
from tests.unit.input.hub_folders import (
    ROWS_PER_SHARD,
    hub_folder,
    question,
    saved_folder,
    write_shard,
)


def instructions(path: Path) -> list[str]:
    return [row.record["instruction"] for row in read_rows(path) if row.record]


def test_one_config_and_split_of_a_hub_like_folder_is_one_batch_file(tmp_path: Path) -> None:
    repo = hub_folder(tmp_path / "questions")
    wanted = DatasetInput(name="questions", config="hard", split="test")
    resolved = resolve(wanted, tmp_path)
    made = snapshot(resolved, tmp_path / "inbox")
    assert made.name == f"questions.hard.test.{resolved.revision[:12]}.parquet"
    expected = [question("hard", "test", shard, row) for shard in (0, 1) for row in range(3)]
    assert instructions(made) == expected
    assert dataset_of(made) == {
        "name": "questions",
        "config": "hard",
        "split": "test",
        "limit": None,
        "revision": resolved.revision,
    }
    # The same revision again: the same file, not written twice.
    stamp = made.stat().st_mtime_ns
    assert snapshot(resolve(wanted, tmp_path), tmp_path / "inbox") == made
    assert made.stat().st_mtime_ns == stamp
    # Another config, split or limit is another batch; its first rows only with a limit.
    first = snapshot(resolve(wanted.model_copy(update={"limit": 4}), tmp_path), tmp_path)
    assert ".hard.test.first4." in first.name and instructions(first) == expected[:4]
    easy = resolve(wanted.model_copy(update={"config": "easy"}), tmp_path)
    assert easy.revision != resolved.revision
    # A changed shard is a new revision: a new batch, the old file stays.
    write_shard(repo, "hard", "test", 1, ["A new question about tides."])
    changed = resolve(wanted, tmp_path)
    assert changed.revision != resolved.revision
    newer = snapshot(changed, tmp_path / "inbox")
    assert newer != made and made.exists()
    assert instructions(newer) == [*expected[:3], "A new question about tides."]


def test_a_save_to_disk_folder_gives_its_split(tmp_path: Path) -> None:
    saved_folder(tmp_path / "saved")
    wanted = DatasetInput(name=str(tmp_path / "saved"), split="test", limit=2)
    made = snapshot(resolve(wanted, tmp_path), tmp_path / "inbox")
    assert instructions(made) == [question("saved", "test", 0, row) for row in range(2)]
    assert made.name.startswith("saved.default.test.first2.")


@pytest.mark.parametrize(
    ("wanted", "reason"),
    [
        (
            DatasetInput(name="questions", config="hard", split="dev"),
            "no split 'dev' (splits: train, test)",
        ),
        (DatasetInput(name="questions", config="medium"), "cannot be loaded: "),
        (DatasetInput(name="saved", split="dev"), "no split 'dev' (splits: train, test)"),
        (DatasetInput(name="hf://datasets/nobody/nothing"), "cannot be loaded: "),
    ],
)
def test_a_dataset_that_cannot_be_loaded_is_one_line_naming_it(
    tmp_path: Path, wanted: DatasetInput, reason: str
) -> None:
    hub_folder(tmp_path / "questions")
    saved_folder(tmp_path / "saved")
    with pytest.raises(DatasetError) as caught:
        resolve(wanted, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{wanted.name}: ") and reason in message
    assert "\n" not in message


def test_the_hub_offline_and_not_cached_is_named(tmp_path: Path) -> None:
    # The test session runs with HF_HUB_OFFLINE=1 (tests/conftest.py), as CI has no network.
    with pytest.raises(DatasetError, match=r"^hf://datasets/nobody/nothing: cannot be loaded: .*"):
        resolve(DatasetInput(name="hf://datasets/nobody/nothing"), tmp_path)


def test_the_command_lines_flags_go_over_the_configs_entry(
    tmp_path: Path, make_config: Callable[..., PipelineConfig]
) -> None:
    config = make_config(
        input={"datasets": [{"name": "questions", "config": "hard", "limit": 5}]},
        base_dir=str(tmp_path),
    )
    folder = str(tmp_path / "questions")
    assert dataset_input(folder, {"split": "test", "limit": None}, config) == DatasetInput(
        name=folder, config="hard", split="test", limit=5
    )
    assert dataset_input("hf://datasets/a/b", {"limit": 3}, config).limit == 3
    with pytest.raises(DatasetError, match=r"^hf://datasets/a/b: limit: Input should be"):
        dataset_input("hf://datasets/a/b", {"limit": 0}, config)


def test_a_watched_dataset_becomes_a_batch_file_once_per_revision(
    tmp_path: Path, make_config: Callable[..., PipelineConfig]
) -> None:
    repo = hub_folder(tmp_path / "questions")
    watched = [{"name": "questions", "config": "easy"}, {"name": "missing"}]
    config = make_config(input={"datasets": watched}, base_dir=str(tmp_path))
    inbox = tmp_path / "inbox"
    made, problems = watched_into_inbox(config, inbox)
    assert [file.parent for file in made] == [inbox] and len(problems) == 1
    assert problems[0].startswith("missing: cannot be loaded: ")
    assert watched_into_inbox(config, inbox)[0] == []  # nothing new
    write_shard(repo, "easy", "train", 0, ["What is a fjord?"] * ROWS_PER_SHARD)
    [again], _ = watched_into_inbox(config, inbox)
    assert again != made[0] and sorted(inbox.iterdir()) == sorted([made[0], again])
    # No half-written file is ever left under a batch's name.
    assert all(pq.read_schema(file) for file in inbox.iterdir())

"""Datasets laid out as people publish them, made locally: a folder like a Hub dataset repo
(a README whose YAML names two configs, each with parquet shards in two splits), and what
`save_to_disk` writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CONFIGS = ("easy", "hard")
SPLITS = ("train", "test")
SHARDS = 2
ROWS_PER_SHARD = 3

_CARD = """---
configs:
{configs}
---
# A dataset of questions, in the Hub's repo layout
"""
_CONFIG = """- config_name: {name}
  data_files:
  - split: train
    path: {name}/train-*.parquet
  - split: test
    path: {name}/test-*.parquet"""


def question(config: str, split: str, shard: int, row: int) -> str:
    return f"In {config} {split} set {shard}, question {row}: why do leaves change colour?"


def write_shard(folder: Path, config: str, split: str, shard: int, questions: list[str]) -> Path:
    path = folder / config / f"{split}-{shard:05d}-of-{SHARDS:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"instruction": questions, "id": list(range(len(questions)))}), path)
    return path


def hub_folder(folder: Path) -> Path:
    """A repo-layout dataset: CONFIGS × SPLITS, SHARDS parquet shards of ROWS_PER_SHARD rows."""
    for config in CONFIGS:
        for split in SPLITS:
            for shard in range(SHARDS):
                rows = [question(config, split, shard, row) for row in range(ROWS_PER_SHARD)]
                write_shard(folder, config, split, shard, rows)
    configs = "\n".join(_CONFIG.format(name=name) for name in CONFIGS)
    (folder / "README.md").write_text(_CARD.format(configs=configs), encoding="utf-8")
    return folder


def saved_folder(folder: Path) -> Path:
    """What `DatasetDict.save_to_disk` writes, with a train and a test split."""
    import datasets

    splits = {
        split: datasets.Dataset.from_dict(
            {"instruction": [question("saved", split, 0, row) for row in range(4)]}
        )
        for split in SPLITS
    }
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder

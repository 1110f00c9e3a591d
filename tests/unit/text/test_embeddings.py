"""all-MiniLM-L6-v2 from its PyPI package: real embeddings, offline, and the diversity guard
and near-duplicate gate built on them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.diversity import max_similarity_to_earlier
from prefgen_dagster.stages import settings_hash
from prefgen_dagster.text import embeddings


def test_the_packaged_model_is_installed() -> None:
    # scripts/setup.sh installs it: without it every run falls back to character overlap.
    assert embeddings.available()


def test_paraphrases_are_close_and_other_topics_far() -> None:
    cat, sitting, revenue, empty = embeddings.embed(
        [
            "The cat sat on the mat.",
            "A cat was sitting on the mat.",
            "Quarterly revenue rose by five percent.",
            "",
        ]
    )
    assert len(cat) == 384
    assert embeddings.cosine(cat, cat) == pytest.approx(1.0, abs=1e-5)
    assert embeddings.cosine(cat, sitting) > 0.9
    assert embeddings.cosine(cat, revenue) < 0.2
    assert abs(embeddings.cosine(cat, empty)) < 0.2


def test_a_vector_does_not_depend_on_the_texts_embedded_with_it() -> None:
    """Texts of many lengths, embedded in two calls, alone, and all together: the same bits
    (padding to the longest text of a mixed batch changed the last digits)."""
    texts = [f"Step {i}: explain how to do thing {i} well. " * (1 + i // 3) for i in range(12)]
    together = embeddings.embed(texts)
    assert embeddings.embed(texts[:4]) + embeddings.embed(texts[4:]) == together
    assert [embeddings.embed([text])[0] for text in texts[::5]] == together[::5]
    assert embeddings.embed([]) == []


def test_the_diversity_guard_compares_meanings_with_embeddings() -> None:
    texts = [
        "Tides are caused by the Moon's gravity pulling on the oceans.",
        "The Moon's gravitational pull on the sea is what causes tides.",
        "Bake the bread at 220 degrees for thirty minutes.",
    ]
    by_meaning = max_similarity_to_earlier(texts, embeddings.embed(texts))
    by_letters = max_similarity_to_earlier(texts)
    assert by_meaning[0] is None and by_letters[0] is None
    assert by_meaning[1] > 0.85 > by_letters[1]  # a paraphrase shares few 3-grams
    assert by_meaning[2] < 0.3


def test_embeddings_setting(make_config: Callable[..., PipelineConfig]) -> None:
    assert make_config(embeddings="auto").uses_embeddings() == embeddings.available()
    assert not make_config(embeddings="off").uses_embeddings()
    assert make_config(embeddings="on").uses_embeddings()
    off, on = make_config(embeddings="off"), make_config(embeddings="on")
    assert settings_hash(off, "generation") != settings_hash(on, "generation")
    assert settings_hash(off, "judge") == settings_hash(on, "judge")

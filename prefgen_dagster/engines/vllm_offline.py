"""vLLM in-process: the whole list of requests goes to `LLM.chat` in one call."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence

from prefgen_dagster.config import ModelSpec
from prefgen_dagster.engines.base import LLMRequest, LLMResult


class VLLMOfflineEngine:
    """One `vllm.LLM` kept for as long as a stage needs it."""

    def __init__(self, location: str, spec: ModelSpec):
        # In-process engine core: fast to start and no worker processes to clean up.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self._llm = LLM(
            model=location,
            dtype=spec.dtype,
            max_model_len=spec.max_model_len,
            seed=0,
            **spec.engine_kwargs,
        )

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if not requests:
            return []
        started = time.perf_counter()
        outputs = self._llm.chat(
            [request.messages for request in requests],
            sampling_params=[_sampling_params(request) for request in requests],
            use_tqdm=False,
        )
        per_request = (time.perf_counter() - started) / len(requests)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            results.append(
                LLMResult(
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(completion.token_ids),
                    latency_s=per_request,
                )
            )
        return results

    def close(self) -> None:
        del self._llm
        gc.collect()


def _sampling_params(request: LLMRequest):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = None
    if request.json_schema is not None:
        # Whitespace control is an engine setting (`structured_outputs_config` in the model's
        # engine_kwargs); the per-request flag is ignored by vLLM 0.32.
        structured = StructuredOutputsParams(json=request.json_schema)
    return SamplingParams(
        temperature=request.sampling.temperature,
        top_p=request.sampling.top_p,
        max_tokens=request.sampling.max_tokens,
        seed=request.seed,
        structured_outputs=structured,
    )

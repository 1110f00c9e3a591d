"""vLLM in-process: the whole list of requests is queued at once and the engine is stepped
until every one is done, handing each answer on as soon as it finishes (what `LLM.chat`
does, except that it returns only at the end).

Each prompt is rendered once, here, with the model's own chat template and tokenizer (as
`LLM.chat` renders it), and queued as token ids. Its length decides first: vLLM refuses the
whole call when one prompt fills the model's context, so those that cannot fit come back as
`PromptTooLong` errors without being sent: they fail alone, the rest is answered (and
cached), and no prompt is ever cut short.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence

from prefgen_dagster.config.base import ModelSpec
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult


class VLLMOfflineEngine:
    """One `vllm.LLM` kept for as long as the run's stages need it."""

    # Engines in one process share vLLM's distributed state; closing one ends it for all
    # (the run's `EnginePool` closes them together).
    shares_process_state = True

    # Chat models answer after the assistant's turn is opened; a reward model reads a whole
    # conversation whose last turn is the answer it scores.
    add_generation_prompt = True

    def __init__(self, location: str, spec: ModelSpec, **engine_kwargs: object):
        # In-process engine core: fast to start and no worker processes to clean up.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        # vLLM freezes the collector's heap once its engine has started (after full
        # collections over every object the process tracks: the imported torch, vLLM and
        # Dagster, ~800k objects, ~0.6 s each here) and unfreezes it when the engine shuts
        # down. Freezing now, before the start, spares those collections and the ones the
        # model load sets off; cyclic garbage frozen with it is freed at that unfreeze.
        gc.freeze()
        self._llm = LLM(
            model=location,
            dtype=spec.dtype,
            max_model_len=spec.max_model_len,
            seed=0,
            **engine_kwargs,
            **spec.engine_kwargs,
        )
        self._max_model_len = spec.max_model_len

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        if not requests:
            return []
        results: list[LLMResult | None] = [None] * len(requests)

        def settle(index: int, result: LLMResult) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        token_ids = self.prompt_token_ids(requests)
        sendable = []
        for index, ids in enumerate(token_ids):
            if len(ids) < self._max_model_len:  # vLLM's rule: room for at least one token
                sendable.append(index)
            else:
                settle(index, LLMResult(None, error=_too_long(len(ids), self._max_model_len)))
        if sendable:
            self._run(requests, token_ids, sendable, settle)
        return [result for result in results if result is not None]

    def _run(
        self,
        requests: Sequence[LLMRequest],
        token_ids: list[list[int]],
        sendable: list[int],
        settle: OnResult,
    ) -> None:
        """Queue the requests, then step the engine, settling each one as it finishes."""
        request_ids = self._llm.enqueue(
            [{"prompt_token_ids": token_ids[index]} for index in sendable],
            sampling_params=[_sampling_params(requests[index]) for index in sendable],
            use_tqdm=False,
        )
        # enqueue returns the engine's internal ids ("<id>-<8 random characters>"); outputs
        # and abort_request use the request's own id, the part before the dash.
        own_ids = [request_id.rsplit("-", 1)[0] for request_id in request_ids]
        index_of = dict(zip(own_ids, sendable, strict=True))
        engine = self._llm.llm_engine
        started = time.perf_counter()
        try:
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished:
                        settle(
                            index_of[output.request_id],
                            LLMResult(
                                text=output.outputs[0].text,
                                finish_reason=output.outputs[0].finish_reason,
                                prompt_tokens=len(output.prompt_token_ids or []),
                                completion_tokens=len(output.outputs[0].token_ids),
                                latency_s=time.perf_counter() - started,
                            ),
                        )
        finally:  # an interrupt leaves no request behind in the engine
            if engine.has_unfinished_requests():
                engine.abort_request(own_ids)

    def prompt_token_ids(self, requests: Sequence[LLMRequest]) -> list[list[int]]:
        """Each request's prompt as vLLM's chat renders it: the model's chat template, then
        its tokenizer (no special tokens added: the template has them)."""
        tokenizer = self._llm.get_tokenizer()
        texts = [
            tokenizer.apply_chat_template(
                request.messages, tokenize=False, add_generation_prompt=self.add_generation_prompt
            )
            for request in requests
        ]
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    def close(self) -> None:
        """Dropping the `LLM` runs vLLM's shutdown at once (its finalizer), which frees the
        weights and KV cache and collects garbage itself (the run's `EnginePool` turns those
        collections into one after its last close); another `gc.collect()` here found
        nothing more to free (SmolLM2: 12 MB of 1.6 GB) and costs ~0.3 s with vLLM loaded."""
        del self._llm


class VLLMRewardEngine(VLLMOfflineEngine):
    """A reward model in-process (`kind: reward`): vLLM's pooling runner scores each
    request's conversation, its last turn the answer, in one forward pass. The answer is the
    model's raw score as text (its logit: no sigmoid), which `judge/modes.Reward` parses."""

    add_generation_prompt = False

    def __init__(self, location: str, spec: ModelSpec):
        super().__init__(location, spec, runner="pooling")

    def _run(
        self,
        requests: Sequence[LLMRequest],
        token_ids: list[list[int]],
        sendable: list[int],
        settle: OnResult,
    ) -> None:
        from vllm import PoolingParams

        started = time.perf_counter()
        outputs = self._llm.classify(
            [{"prompt_token_ids": token_ids[index]} for index in sendable],
            pooling_params=PoolingParams(use_activation=False),
            use_tqdm=False,
        )
        for index, output in zip(sendable, outputs, strict=True):
            settle(
                index,
                LLMResult(
                    text=repr(float(output.outputs.probs[0])),
                    finish_reason="stop",
                    prompt_tokens=len(token_ids[index]),
                    completion_tokens=0,
                    latency_s=time.perf_counter() - started,
                ),
            )


def vllm_engine(location: str, spec: ModelSpec) -> VLLMOfflineEngine:
    """The in-process engine for a model of either kind."""
    return (VLLMRewardEngine if spec.kind == "reward" else VLLMOfflineEngine)(location, spec)


def _too_long(prompt_tokens: int, max_model_len: int) -> str:
    return (
        f"PromptTooLong: the prompt has {prompt_tokens} tokens, the model's max_model_len is "
        f"{max_model_len}; raise max_model_len or shorten what goes into it"
    )


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

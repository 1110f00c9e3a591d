"""What each column means, written once: the Dagster UI's column schemas, the export's column
list and the dataset card read it from here.

A column name means the same thing in every table that has it (one concept, one name), so
descriptions are keyed by column; `table.column` keys hold the few that need more. The
tables' columns and types are in `schema.py`; `tests/unit/storage/test_columns.py` fails when
a column of a table, of a SQL model or of the export has no description.
"""

from __future__ import annotations

# The export's name here, as the Dagster asset calls it.
EXPORT = "preference_dataset"

DESCRIPTIONS: dict[str, str] = {
    # Ids and where a row came from.
    "batch_id": "The batch (the inbox file's name) the row belongs to",
    "source": "The input file, relative to the config's folder",
    "source_row": "The row's number in its input file (1-based)",
    "instruction_id": "Content hash of the instruction and its system prompt",
    "completion_id": "Content hash of the text's request and answer",
    "call_id": "Hash of the LLM request; the key of the call cache (llm_calls)",
    "run_id": "The Dagster run that made the call",
    "pair_id": "Content hash of the pair's instruction, chosen and rejected texts",
    "parent_completion_id": "The text this rewrite was made from",
    "root_completion_id": "The pooled completion a chain of rewrites started from",
    "pipeline_hash": "Hash of every setting that shapes the rows; a change re-runs stages",
    # Batches and input rows.
    "input_rows": "Rows read from the input file",
    "accepted_rows": "Input rows kept as instructions",
    "rejected_rows": "Input rows rejected (see rejected_inputs)",
    "ingested_at": "When the batch was ingested",
    "history": "A conversation's turns before the instruction (its last user turn), as a JSON "
    "list of {role, content}; NULL for a single instruction",
    "dataset": "The dataset split the batch's file was made from (JSON: name, config, split, "
    "limit, revision), or NULL for a file",
    "project_id": "The annotation tool's project that holds the batch's review tasks",
    "task_id": "The annotation tool's task that showed the pair",
    "chosen_shown": "Where the review task showed the chosen text: left or right",
    "stratum": "The sample stratum the pair was drawn from: pair kind and margin bucket",
    "pushed_at": "When the pair was sent for review",
    "annotator": "Who gave the verdict (the annotation tool's user)",
    "choice": "The verdict on the pair as sent: chosen, rejected, tie or both_bad",
    "annotated_at": "When the annotator gave the verdict",
    "pulled_at": "When prefgen read the verdict from the annotation tool",
    "copied_from": "The file `prefgen run` copied into the inbox as the batch's (absolute path)",
    "copied_at": "When `prefgen run` last copied that file into the inbox",
    "instruction": "The user's instruction, normalized",
    "system_prompt": "The system prompt sent with the instruction, if any",
    "raw": "The rejected row as read, shortened",
    "input_fields": "The input row's other fields (an id, a category, ...) as a JSON object",
    "reason": "Why: the row was rejected, or the check failed (its first offending row)",
    # Texts.
    "model": "The model that was called (its identity: the path or served name)",
    "backend": "The engine that ran the model (vllm, openai, ...)",
    "pool_member": "Index of the generation.pool entry that asked for the text",
    "system_variant": "Which of the pool entry's system prompts was used, if several",
    "sampling": "The sampling parameters of the request, as JSON",
    "sample_index": "Which of the pool entry's num_completions samples this is",
    "template_version": "Hash of the prompt template that built the request",
    "text": "The generated text (NULL when the request failed)",
    "finish_reason": "Why the model stopped: stop, or length (cut at max_tokens)",
    "prompt_tokens": "Tokens in the prompt",
    "completion_tokens": "Tokens in the answer",
    "regenerations": "How often the diversity guard asked for this text again",
    "similarity": "Highest similarity to an earlier text of the instruction (embedding cosine, "
    "else character 3-gram Jaccard)",
    "too_similar": "Still above the generation diversity bound after the regenerations",
    "repetition": "Share of the text's word 3-grams that repeat an earlier one",
    "embedding": "Sentence embedding (all-MiniLM-L6-v2), when embeddings are on",
    "echoed_marker": "A chat-template marker or prompt heading found in the text",
    "error": "Why the request failed for good (NULL when it was answered)",
    "plan_key": "Hash of the stage's code, settings and the requests of the row's unit of work "
    "(an instruction's completions, a completion's rewrites, a judge group); a later run "
    "keeps the unit's rows while it is unchanged and answered",
    "mutation": "The EvolQuality criterion the rewrite was asked for",
    "round": "The EvolQuality round (1 = rewrite of the pooled completion)",
    "origin": "pooled (a pool model's completion) or evolved (an EvolQuality rewrite)",
    "chars": "Length of the text in characters",
    "not_chosen_because": "Why the text may be rejected but never chosen (NULL: it may)",
    "can_be_chosen": "True when not_chosen_because is NULL",
    # Ratings.
    "judge": "The judge model (its identity), or `panel` for the judges together",
    "aspect": "The UltraFeedback aspect rated (helpfulness, honesty, ...)",
    "judge_order": "Index of the order the texts were shown in (0 = original)",
    "order_name": "The order the texts were shown in: original, reversed or rotated",
    "position": "The text's place in the judge's prompt (1 = shown first)",
    "shown": "How many texts the judge's prompt showed",
    "rating": "The judge's 1-5 rating (NULL when unparseable or not applicable); a reward "
    "model's is its score placed on 1-5 among the batch's scores of that model",
    "raw_score": "A reward model's score as the model gave it (NULL for other judges)",
    "not_applicable": "The judge said the aspect does not apply to the text",
    "rationale": "The judge's reason for the rating",
    "raw_output": "The judge's answer as received",
    "parse_status": "ok, or why the answer could not be read (request_failed, ...)",
    "attempts": "Requests sent for this answer (re-asks and HTTP retries included)",
    "judge_settings": "Hash of the judge settings and models that made the rating",
    "purpose": "label (makes pairs), canary, or position_probe (a reversed second look)",
    "mode": "The judge mode: listwise, pointwise, pairwise, or reward (a reward model)",
    # Canaries and calibration.
    "canary_id": "Id of the canary: a real answer against a corrupted copy of it",
    "kind": "How the canary's text was corrupted",
    "intact_id": "Id of the canary's real side, as rated",
    "corrupted_id": "Id of the canary's corrupted side, as rated",
    "source_completion_id": "The completion the canary was made from",
    "source_model": "The model that wrote the canary's source completion",
    "corrupted_from_id": "The completion the corrupted text was taken from, if another one",
    "corrupted_text": "The corrupted text the judge was shown",
    "corrupted_first": "The corrupted side was shown first in the original order",
    "sets_labels": "This judge (or the panel) makes the pairs' scores",
    "canaries": "Canaries the judge scored",
    "canaries_correct": "Canaries whose real side the judge rated higher",
    "canaries_tied": "Canaries whose two sides the judge rated the same (half right)",
    "canaries_wrong": "Canaries whose corrupted side the judge rated higher",
    "canaries_unscored": "Canaries the judge left unrated",
    "canary_accuracy": "Share of scored canaries the judge got right, ties as half",
    "canary_ci_low": "Lower bound of canary_accuracy's 95% Wilson interval",
    "canary_ci_high": "Upper bound of canary_accuracy's 95% Wilson interval",
    "position_effect": "Rating points the same text gains from first to last position",
    "position_items": "Texts shown at two or more positions (position_effect's sample)",
    # Pairs.
    "chosen_completion_id": "The chosen text's completion_id",
    "rejected_completion_id": "The rejected text's completion_id",
    "chosen_model": "The model that wrote the chosen text",
    "rejected_model": "The model that wrote the rejected text",
    "chosen_origin": "pooled or evolved: where the chosen text came from",
    "rejected_origin": "pooled or evolved: where the rejected text came from",
    "chosen_rating": "The chosen text's score: mean rating over judges and aspects",
    "rejected_rating": "The rejected text's score: mean rating over judges and aspects",
    "margin": "chosen_rating - rejected_rating, in rating points",
    "strategy": "The pairing.strategy that made the pair",
    "judge_agreement": "Share of the judges whose own score puts chosen above rejected",
    "cosine": "Cosine similarity of chosen and rejected embeddings (NULL without them)",
    "word_similarity": "Jaccard similarity of chosen's and rejected's word sets",
    "dropped_because": "The rule that dropped the pair (NULL: kept, in dpo_pairs)",
    "human_review": "What people's verdicts did to the pair: kept, flipped (chosen and rejected "
    "swapped) or dropped, and how many verdicts said so (NULL: no verdict)",
    # A judge's score of a text (the judge_scores model).
    "judge_scores.score": "The judge's mean rating of the text over the aspects it rated",
    "aspects": "Aspects the judge rated the text on (what score is a mean over)",
    # Judge-human agreement (the human_agreement model).
    "verdicts": "Verdicts scored: they prefer one text or call the texts equal",
    "agree": "Verdicts that prefer the text the labels put first",
    "disagree": "Verdicts that prefer the text the labels put second",
    "ties": "Verdicts that call the texts equal, or whose texts the judge rated the same (half)",
    "both_bad": "Verdicts that call both texts bad (not scored)",
    "agreement": "Share of the scored verdicts that agree with the labels, ties as half",
    "agreement_ci_low": "Lower bound of agreement's 95% Wilson interval",
    "agreement_ci_high": "Upper bound of agreement's 95% Wilson interval",
    "annotator_agreement": "Share of pairs of verdicts on the same pair that give the same choice",
    "annotator_pairs": "Pairs of verdicts on the same pair (annotator_agreement's sample)",
    "unmatched_verdicts": "Verdicts on pairs the batch no longer makes (not counted)",
    "verdicts_margin_under_1": "Verdicts scored on pairs with a margin under 1 point",
    "agreement_margin_under_1": "agreement on pairs with a margin under 1 point",
    "verdicts_margin_1_to_2": "Verdicts scored on pairs with a margin from 1 to under 2 points",
    "agreement_margin_1_to_2": "agreement on pairs with a margin from 1 to under 2 points",
    "verdicts_margin_2_up": "Verdicts scored on pairs with a margin of 2 points or more",
    "agreement_margin_2_up": "agreement on pairs with a margin of 2 points or more",
    "human_agreement.judge": "The judge (its identity), or `pairs` for the pairs as made",
    "settings_hash": "Hash of the settings of every stage the pair was made with",
    # Checks.
    "check_name": "The check (its file name in dbt_like_sql/checks/)",
    "asset": "The asset the check guards",
    "severity": "WARN or ERROR",
    "blocking": "A failure holds the batch out of the export",
    "passed": "The check found no offending rows",
    "failing_rows": "Rows the check returned",
    "evaluated_at": "When the check ran",
    # The call cache and its failures.
    "request": "The request as sent (JSON)",
    "response": "The answer as received",
    "latency_s": "Seconds the request took",
    "created_at": "When the call was cached",
    "runs": "Runs that tried the request and failed",
    "failed_at": "When the request last failed",
    # The export (TRL's conversational format).
    "prompt": "The conversation before the answer: system (if any) and user messages",
    "chosen": "The preferred answer, one assistant message",
    "rejected": "The dispreferred answer, one assistant message",
    "score_chosen": "The judges' mean 1-5 rating of the chosen answer",
    "score_rejected": "The judges' mean 1-5 rating of the rejected answer",
    "margin_normalized": "margin over the width of the 1-5 rating scale, in [0, 1]",
    "split": "train or test; an instruction's pairs are all in one split",
    "chosen_generation_system_prompt": "The system prompt the chosen text (or the pooled "
    "completion it was rewritten from) was generated with",
    "rejected_generation_system_prompt": "The system prompt the rejected text (or the pooled "
    "completion it was rewritten from) was generated with",
    "judges": "The judges (config names) whose ratings scored the chosen text",
    "judge_mode": "The judge mode(s) the ratings were made in",
    f"{EXPORT}.margin": "score_chosen - score_rejected, in rating points. TRL's "
    "`RewardTrainer` uses a column named `margin` in its loss (drop or rename it if that is "
    "not wanted); `DPOTrainer` ignores it",
    f"{EXPORT}.chosen_model": "The model (its config name) that wrote the chosen text",
    f"{EXPORT}.rejected_model": "The model (its config name) that wrote the rejected text",
}
# Columns named after data that is not ours: the export's `input_<field>` columns.
PREFIXES: dict[str, str] = {"input_": "A field of the input row, as it came"}


def describe(table: str, column: str) -> str | None:
    """What a column of a table (or of a SQL model, or of the export) means, if written."""
    found = DESCRIPTIONS.get(f"{table}.{column}") or DESCRIPTIONS.get(column)
    if found is None and table == EXPORT:
        found = next((text for p, text in PREFIXES.items() if column.startswith(p)), None)
    return found

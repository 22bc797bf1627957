"""How many dialogue tokens fit in model.max_length beside the classification prompt and the answer."""

from __future__ import annotations

from emoneurons.evaluate.shots import EvalDataError
from emoneurons.model.loading import LoadedModel
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import label_ids


def dialogue_budget(lm: LoadedModel, prompt, eval_params: EvalParams, max_length: int) -> int:
    """Dialogue tokens that fit in max_length beside the prompt (prefix with the shots, suffix)
    and the answer (the longest label, or max_new_tokens when generating)."""
    answer = (
        eval_params.max_new_tokens if eval_params.method == "generate"
        else max(len(ids) for ids in label_ids(lm.tokenizer, eval_params.label_format))
    )
    budget = max_length - len(prompt.prefix) - len(prompt.suffix) - answer
    if budget < 1:
        raise EvalDataError(
            f"model.max_length: {max_length} tokens leave no room for a dialogue beside the classification "
            f"prompt ({len(prompt.prefix) + len(prompt.suffix)} tokens with eval.shots={eval_params.shots}) and "
            f"the answer ({answer}); raise model.max_length or lower eval.shots"
        )
    return budget

"""The paper's labelling prompts (Figure 7), verbatim: the filter stage's LLM judges."""

from __future__ import annotations

from emoneurons.emotions import EMOTIONS

# Figure 7: labelling by the judges, first try and the stricter retry for answers outside the six.
LABEL_PROMPT = (
    "You are a sentiment analysis expert. Analyze the following conversation and determine the "
    "primary emotion that best represents the overall sentiment expressed throughout the "
    "dialogue. Select only from the following emotions: {emotions}. Conversation: {dialogue} "
    "Please respond with only the emotion name from the provided list. Do not include any "
    "additional text, formatting, or explanations. ."
)
LABEL_RETRY_PROMPT = (
    "You are a sentiment analysis expert. Analyze the following conversation and determine the "
    "primary emotion that best represents the overall sentiment expressed throughout the "
    "dialogue. **Important: You must select only one emotion from the following list and "
    "respond with exactly one word in lowercase. Do not use any other emotion words or "
    "additional text, formatting, explanations, or comments.** List of emotions: {emotions}. "
    "Conversation: {dialogue} Please respond with only the emotion name from the provided list. "
    "Do not include any additional text, formatting, or explanations."
)


def label_prompt(dialogue: str, retry: bool = False) -> str:
    """The paper's labelling prompt (or its stricter retry) for one dialogue."""
    template = LABEL_RETRY_PROMPT if retry else LABEL_PROMPT
    return template.format(emotions=", ".join(EMOTIONS), dialogue=dialogue)

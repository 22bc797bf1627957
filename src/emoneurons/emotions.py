"""The six basic emotions (Ekman 1992) in the paper's order, and the paper's prompts verbatim."""

from __future__ import annotations

import re

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
EMOTION_INDEX: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}

# Figure 5: emotion prediction (used by mask-eval and, by default, the hf judge's classification).
CLASSIFY_SYSTEM_PROMPT = (
    "You are a helpful assistant that predicts emotions from dialogues. "
    "Your task is to predict the emotion conveyed in a given dialogue.\n\n"
    "You must strictly follow these guidelines:\n\n"
    "1. Predict one of the following emotions only: "
    "[anger, disgust, fear, happiness, sadness, surprise].\n"
    "2. Output only the predicted emotion in the requested format, without any additional "
    "text, explanations, or comments."
)
CLASSIFY_USER_PROMPT = (
    "Given the following dialogue, predict the emotion that is most clearly conveyed. "
    "The dialogue is structured as follows:\n{prompt}\n"
    "Your output should be in the following format:\n"
    "[One of anger, disgust, fear, happiness, sadness, surprise]"
)

# Figure 7: topic augmentation (gpt-4o-mini). `{existing}` is a bounded sample of the pool,
# not the whole pool as in the original release (issue 4).
AUGMENT_PROMPT = (
    'Please generate a one- or two-word alternative to the term "{topic}" that is semantically '
    "related and could replace it in similar contexts. Requirements: 1. The new term should be "
    'relevant to "{topic}" and evoke similar associations without being identical in form or '
    'concept. 2. Avoid terms that add descriptive phrases or explanations, such as "The History '
    'of" or "Overview of." Instead, aim for concise, commonly recognized nouns or phrases. '
    "3. Ensure the alternative is distinct from, and not included in, the following existing "
    'list: {existing} Example Transformations: - "New York" → "Los Angeles" - "Apple Company" '
    '→ "Microsoft" - "European Union" → "NATO" - "Piano" → "Violin" Provide only the new term '
    "without any additional explanations or annotations."
)

# Figure 7: synthetic dialogue generation (gemini-1.5-flash).
GENERATE_PROMPT = (
    "As a creative writer, craft a natural and coherent dialogue between two characters about "
    'the topic "{topic}". The conversation should vividly convey the emotion of "{emotion}" '
    "throughout the interaction. Use the following format strictly without any additional text "
    "or explanations: A: [First character's utterance] B: [Second character's response] "
    "A: [First character's reply] ... Ensure that the dialogue captures the essence of "
    '"{emotion}" and stays focused on the topic "{topic}". Do not include any narration, '
    "descriptions, or emotion labels. Provide only the dialogue in the specified format."
)

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

_EMOTION_WORD = re.compile(r"\b(" + "|".join(EMOTIONS) + r")\b", re.IGNORECASE)


def parse_emotion(answer: str) -> str | None:
    """The first of the six emotion words in a model's answer, or None when there is none."""
    match = _EMOTION_WORD.search(answer)
    # casefold, not lower: IGNORECASE also matches "ſadness" (long s), which lower() keeps as is.
    return match.group(1).casefold() if match else None


def label_prompt(dialogue: str, retry: bool = False) -> str:
    """The paper's labelling prompt (or its stricter retry) for one dialogue."""
    template = LABEL_RETRY_PROMPT if retry else LABEL_PROMPT
    return template.format(emotions=", ".join(EMOTIONS), dialogue=dialogue)

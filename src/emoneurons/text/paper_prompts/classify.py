"""The paper's emotion-prediction prompt (Figure 5), verbatim: mask-eval and count (`count.text: prompt`)."""

from __future__ import annotations

# Figure 5: emotion prediction.
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

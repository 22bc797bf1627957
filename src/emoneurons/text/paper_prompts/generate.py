"""The paper's dialogue-generation prompt (Figure 7), verbatim: the generate stage's LLM backends."""

from __future__ import annotations

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

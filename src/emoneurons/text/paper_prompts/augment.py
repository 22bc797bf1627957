"""The paper's topic-augmentation prompt (Figure 7), verbatim: the augment stage's LLM backends."""

from __future__ import annotations

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

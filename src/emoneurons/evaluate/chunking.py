"""mask-eval's test dialogues in chunks, so that what it holds does not grow with the test split.

The unmodified run keeps, for layer reuse, the hidden state entering each boundary layer of every
test token (boundary_states.py): (test tokens) x hidden size x bytes x boundaries, which at
EmoPrism's 14,401 test dialogues (~3.4 M tokens) is 0.9 GB per boundary at a hidden size of 64
in float32 and 28 GB at 8B's 4,096 in bfloat16. mask-eval runs one chunk of rows through the
unmodified model and every masked condition before it starts the next, so one chunk's states
(and token ids) are held at a time: at most CHUNK_BYTES by the estimate below.

A chunk is a run of the engine's own length-sorted batches (`length_buckets` over every test
row, cut between whole batches), given to the engine in row order: its batches hold the same rows
as one engine over all the dialogues, so every score is the same bit for bit. What a chunk adds
is its prompt prefix and calibration rows computed again, counted in eval.json's
tokens.computed (at a chunk of tens of thousands of tokens, around 1%). A test split whose states
fit in CHUNK_BYTES (the default run's) is one chunk: the run is the unchunked one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from emoneurons.model.batching import length_buckets
from emoneurons.model.loading import LoadedModel
from emoneurons.text.chat_prompt import dialogue_ids

# What one chunk may hold: its kept states and its rows' host copies (the estimate below).
CHUNK_BYTES = 256 * 2**20
# The engine's own host memory per token of a chunk, besides the kept states: the ids as Python
# ints while its batches are built (~36 bytes), the padded id tensors (8 bytes per position, with
# padding) and the tokenizer's output (measured: docs/SCALE.md).
HOST_BYTES_PER_TOKEN = 128


def row_lengths(tokenizer: PreTrainedTokenizerBase, dialogues: Sequence[str], suffix: int) -> list[int]:
    """Each engine row's tokens: the dialogue's (as MaskedClassifier tokenizes it) and `suffix`."""
    return [len(dialogue_ids(tokenizer, dialogue)) + suffix for dialogue in dialogues]


def bytes_per_token(lm: LoadedModel, boundaries: int) -> int:
    """What a chunk holds per token (padding included): the hidden state entering each of
    `boundaries` layers, in the model's dtype, and HOST_BYTES_PER_TOKEN."""
    embedding = lm.model.get_input_embeddings().weight
    return embedding.shape[1] * embedding.element_size() * boundaries + HOST_BYTES_PER_TOKEN


def chunked_rows(lengths: Sequence[int], batch_size: int, per_token: int, *, extra_tokens: int = 0,
                budget: int | None = None) -> list[list[int]]:
    """The test rows in chunks (each in row order) of whole length-sorted batches whose estimated
    bytes (padded width plus `extra_tokens` per row, the label continuation's, times `per_token`)
    stay within `budget` (None: CHUNK_BYTES); a batch over the budget alone is a chunk of its own."""
    budget = CHUNK_BYTES if budget is None else budget
    chunks: list[list[int]] = []
    current: list[int] = []
    held = 0
    for batch in length_buckets(lengths, batch_size):
        cost = len(batch) * (max(lengths[i] for i in batch) + extra_tokens) * per_token
        if current and held + cost > budget:
            chunks.append(sorted(current))
            current, held = [], 0
        current += batch
        held += cost
    if current:
        chunks.append(sorted(current))
    return chunks


def rows_key(rows: Sequence[int]) -> str:
    """A short name of a chunk's rows: a checkpoint of one chunk is not taken for another's."""
    return hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]

"""count's input at any size: the dialogues read a piece at a time (`DialogueList` in memory,
`ParquetDialogues` the train split), and their token ids kept on disk (`TokenStore`) rather than
as Python lists (~36 bytes a token: 9.4 GB for the paper's 273k train dialogues, 64 M tokens).

The store holds, per dialogue it was given, the token ids count feeds (already cut to the
budget model.max_length leaves) as uint32 in one file, the positions of cue-word tokens as one
byte per token in another (count.skip_cue_tokens), and in memory only each dialogue's offset and
uncut length (12 bytes a dialogue). Its index is written atomically, with what the ids depend on
(the recipe): a store of another recipe, or one a kill cut short, is not read, and is rebuilt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.io.atomic import atomic_path
from emoneurons.io.tables import DataError, read_table, table_batches

PIECE_ROWS = 2048  # dialogues read at a time (counting.PIECE_CHARS bounds what is tokenized at once)


class Dialogues(Protocol):
    """Dialogues to count: how many, each one's emotion (an index into EMOTIONS), and the texts of
    rows [start, stop) a piece at a time, as (the piece's first row, its texts)."""

    def __len__(self) -> int: ...

    def emotions(self) -> np.ndarray: ...

    def texts(self, start: int, stop: int) -> Iterator[tuple[int, list[str]]]: ...


class DialogueList:
    """Dialogues and their emotions given as lists (tests, benchmarks, small runs)."""

    def __init__(self, dialogues: Sequence[str], emotions: Sequence[str]) -> None:
        if len(dialogues) != len(emotions):
            raise ValueError(f"{len(dialogues)} dialogues but {len(emotions)} emotions")
        unknown = sorted({e for e in emotions if e not in EMOTION_INDEX})
        if unknown:
            raise ValueError(f"unknown emotion {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
        self.dialogues = dialogues
        self._emotions = np.array([EMOTION_INDEX[e] for e in emotions], dtype=np.int8)

    def __len__(self) -> int:
        return len(self.dialogues)

    def emotions(self) -> np.ndarray:
        return self._emotions

    def texts(self, start: int, stop: int) -> Iterator[tuple[int, list[str]]]:
        for first in range(start, stop, PIECE_ROWS):
            yield first, list(self.dialogues[first:min(first + PIECE_ROWS, stop)])


class ParquetDialogues:
    """The train split's `dialogue` and `theme` columns, read a row group at a time. The emotions
    (one byte a dialogue) are read and checked at once: DataError, one line naming the file, on a
    missing column, an unknown emotion, or an emotion without dialogues."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        table_batches(self.path, columns=["theme", "dialogue"])  # a missing column: said now, before any work
        themes = read_table(self.path, columns=["theme"])["theme"]
        unknown = sorted(set(themes.unique().to_list()) - set(EMOTIONS), key=str)
        if unknown:
            raise DataError(f"{self.path}: column 'theme': unknown emotion {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
        present = set(themes.unique().to_list())
        absent = [e for e in EMOTIONS if e not in present]
        if absent:
            raise DataError(f"{self.path}: no dialogues for emotion(s) {', '.join(absent)}: every emotion needs tokens")
        self._emotions = themes.replace_strict(EMOTION_INDEX, return_dtype=pl.Int8).to_numpy()

    def __len__(self) -> int:
        return len(self._emotions)

    def emotions(self) -> np.ndarray:
        return self._emotions

    def texts(self, start: int, stop: int) -> Iterator[tuple[int, list[str]]]:
        first = start
        for batch in table_batches(self.path, PIECE_ROWS, columns=["dialogue"], start=start, stop=stop):
            yield first, batch["dialogue"].to_list()
            first += batch.height


class TokenStore:
    """The token ids of some of `rows` dialogues, in files named `name`.* in `folder`."""

    def __init__(self, folder: Path, name: str, recipe: dict[str, Any], rows: int) -> None:
        self.folder, self.recipe = Path(folder), recipe
        self.ids_path = self.folder / f"{name}.ids"
        self.cues_path = self.folder / f"{name}.cues"
        self.index_path = self.folder / f"{name}.index.npz"
        self.offset = np.full(rows, -1, dtype=np.int64)  # where a dialogue's ids start in the file (-1: not stored)
        self.stored = np.zeros(rows, dtype=np.int32)  # how many ids of it are stored (cut to the budget)
        self.full = np.zeros(rows, dtype=np.int32)  # its own token count before the cut
        self.size = 0  # ids in the file

    def load(self) -> bool:
        """Read the index a previous run saved; False (the store starts empty) when there is none,
        it is of another recipe or row count, or its files are shorter than it says."""
        try:
            with np.load(self.index_path, allow_pickle=False) as index:
                recipe = json.loads(str(index["recipe"]))
                offset, stored, full = index["offset"], index["stored"], index["full"]
            size = int(stored.sum())
            whole = self.ids_path.stat().st_size >= 4 * size and (
                not self.recipe.get("skip_cues") or self.cues_path.stat().st_size >= size)
        except (OSError, ValueError, KeyError):
            return False
        if recipe != self.recipe or len(offset) != len(self.offset) or not whole:
            return False
        self.offset, self.stored, self.full, self.size = offset, stored, full, size
        return True

    def reset(self) -> None:
        """An empty store: its files emptied, every dialogue not stored."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index_path.unlink(missing_ok=True)
        for path in (self.ids_path, self.cues_path):
            path.write_bytes(b"")
        self.offset[:] = -1
        self.stored[:] = 0
        self.full[:] = 0
        self.size = 0

    def add(self, entries: Iterable[tuple[int, Sequence[int], int, Sequence[int]]]) -> None:
        """Append dialogues: (row, ids to store, uncut token count, positions among the ids of cue tokens)."""
        with self.ids_path.open("ab") as ids_file, self.cues_path.open("ab") as cues_file:
            for row, ids, full, cues in entries:
                ids_file.write(np.asarray(ids, dtype="<u4").tobytes())
                if self.recipe.get("skip_cues"):
                    flags = np.zeros(len(ids), dtype=np.uint8)
                    flags[[p for p in cues if p < len(ids)]] = 1
                    cues_file.write(flags.tobytes())
                self.offset[row], self.stored[row], self.full[row] = self.size, len(ids), full
                self.size += len(ids)

    def save(self) -> None:
        """Write the index (atomically: a kill leaves the previous index or none)."""
        with atomic_path(self.index_path) as tmp, tmp.open("wb") as handle:
            np.savez(handle, recipe=np.array(json.dumps(self.recipe, sort_keys=True)), offset=self.offset,
                     stored=self.stored, full=self.full)

    def reader(self) -> StoreReader:
        return StoreReader(self)


class StoreReader:
    """Stored dialogues read back one at a time (a context manager: it keeps the files open)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.ids = os.open(store.ids_path, os.O_RDONLY)
        self.cues = os.open(store.cues_path, os.O_RDONLY) if store.recipe.get("skip_cues") else None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.ids)
        if self.cues is not None:
            os.close(self.cues)

    def get(self, row: int) -> tuple[list[int], list[int]]:
        """A stored dialogue's ids and the positions among them of cue tokens."""
        offset, n = int(self.store.offset[row]), int(self.store.stored[row])
        if offset < 0:
            raise KeyError(f"dialogue {row} is not in the token store {self.store.ids_path}")
        ids = np.frombuffer(os.pread(self.ids, 4 * n, 4 * offset), dtype="<u4").tolist()
        cues = [] if self.cues is None else np.flatnonzero(np.frombuffer(os.pread(self.cues, n, offset), dtype=np.uint8)).tolist()
        return ids, cues

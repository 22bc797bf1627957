"""A content-addressed on-disk cache of chat responses: one small JSON file per request, named by the
sha256 of the request's canonical JSON, so a rerun, a crash halfway or a second machine (the folder
is a persist: true DVC output) never pays for the same answer twice."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.io.atomic import OutputError, remove_stale_temps, writer_tag

_tmp_names = itertools.count()


def request_fields(
    *,
    backend: str,
    model: str,
    base_url: str | None,
    messages: tuple[tuple[str, str], ...],
    sampling: dict[str, Any],
    sample: int,
) -> dict[str, Any]:
    """Everything that decides an answer, as the JSON-ready mapping that is hashed and stored."""
    return {
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "messages": [[role, content] for role, content in messages],
        "sampling": sampling,
        "sample": sample,
    }


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no whitespace, UTF-8) of `fields`."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "length": cut off at the token limit (entries before it: None)


def prepare_cache_dir(root: str | Path) -> Path:
    """Create a stage's cache folder (a persist: true DVC output must exist even when no request
    was made) with a README, so DVC does not warn about an empty output."""
    root = Path(root)
    readme = root / "README.txt"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not readme.exists():
            readme.write_text(
                "LLM request cache of this stage: one JSON file per request under ab/<sha256>.json,\n"
                "keyed by backend, model, base_url, messages, sampling params and sample index.\n"
            )
    except OSError as error:
        raise OutputError(
            error.errno, f"{root}: cannot create the request cache ({error.strerror or type(error).__name__}); "
            "free space or make the folder writable and run the stage again"
        ) from None
    return root


class ResponseCache:
    """Entries live at root/ab/abcdef....json; each holds the request fields, the text and usage."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.corrupt_removed = 0  # entries found broken, deleted and so refetched
        self._made_dirs: set[Path] = set()  # at most 256 shard folders: spares a mkdir per write
        # A run killed mid-put (SIGKILL) leaves its `.key.<host>-<pid>.<n>.tmp`; removed once its writer is gone.
        for shard in self.root.glob("??"):
            remove_stale_temps(shard)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        """The stored answer, or None when absent; a corrupt entry is deleted and reported as absent."""
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return self._discard(path)
        try:
            entry = json.loads(raw)
            # The name must match the content: a truncated, edited or misplaced file is not trusted.
            if cache_key(entry["request"]) != key or entry["key"] != key:
                return self._discard(path)
            text, usage = entry["text"], entry["usage"]
            if not isinstance(text, str):
                return self._discard(path)
            finish_reason = entry.get("finish_reason")
            if finish_reason is not None and not isinstance(finish_reason, str):
                return self._discard(path)
            return CachedResponse(text, int(usage["prompt_tokens"]), int(usage["completion_tokens"]), finish_reason)
        except (ValueError, KeyError, TypeError):
            return self._discard(path)

    def put(
        self, key: str, fields: dict[str, Any], text: str, prompt_tokens: int, completion_tokens: int,
        finish_reason: str | None = None,
    ) -> None:
        """Store one answer atomically (temporary sibling, then os.replace). A cut-off answer
        (finish_reason "length") is stored too: it was paid for, and a rerun must not ask again."""
        path = self.path(key)
        entry = {
            "key": key,
            "request": fields,
            "text": text,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            "finish_reason": finish_reason,
        }
        data = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        tmp = path.with_name(f".{key}.{writer_tag()}.{next(_tmp_names)}.tmp")
        try:
            if path.parent not in self._made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(path.parent)
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise OutputError(
                error.errno, f"{self.root}: cannot store an answer ({error.strerror or type(error).__name__}); "
                "the answers stored before are kept: free space or make the folder writable and run the stage again"
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _discard(self, path: Path) -> None:
        self.corrupt_removed += 1
        path.unlink(missing_ok=True)
        return None

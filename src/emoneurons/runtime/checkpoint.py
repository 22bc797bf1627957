"""Progress a stage keeps across a kill, in a folder outside its outs (DVC deletes a stage's
outs before running it). Each run's checkpoints live in `<root>/<stage>-<key>/`, where the key
hashes everything the stage's outputs depend on (params values, input file contents, model id):
a checkpoint from other params or data is never read, and is removed with a one-line warning.
Every file is written atomically; one that cannot be read back (truncated) is a warning and
that piece of work starts afresh. The folder goes after the stage's outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from emoneurons.io.atomic import atomic_path

DEFAULT_ROOT = Path(".emoneurons/checkpoints")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_key(values: Mapping[str, Any], inputs: Iterable[Path]) -> str:
    """16 hex digits naming one run's outputs: `values` (params sections, model id) as sorted
    JSON, and the contents of every input file."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(f"\0{path}\0{file_digest(Path(path))}".encode())
    return digest.hexdigest()[:16]


def warn(message: str) -> None:
    print(f"checkpoint: {message}", file=sys.stderr)


class Checkpoints:
    """The checkpoint folder of one stage run: `<root>/<stage>-<key>/`."""

    def __init__(self, root: Path, stage: str, key: str) -> None:
        self.root, self.stage, self.key = Path(root), stage, key
        self.folder = self.root / f"{stage}-{key}"

    def drop_stale(self) -> None:
        """Remove this stage's checkpoints of other params or data, saying so (call on one rank)."""
        if not self.root.is_dir():
            return
        for other in sorted(self.root.glob(f"{self.stage}-*")):
            if other != self.folder and other.is_dir():
                warn(f"{other} is from other params or data: not reused, removed")
                shutil.rmtree(other, ignore_errors=True)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / name) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                      metadata={"key": self.key, "meta": json.dumps(dict(meta))})

    def load_tensors(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(tensors, meta) saved under `name` for this key; None (with a warning when a file is
        there but unreadable or of another key) otherwise."""
        path = self.folder / name
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            if metadata.get("key") != self.key:
                raise ValueError("saved for other params or data")
            return tensors, json.loads(metadata["meta"])
        except Exception as error:  # any unreadable file means the same thing: start afresh
            warn(f"{path} unreadable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); starting afresh")
            return None

    def save_object(self, name: str, data: Mapping[str, Any]) -> None:
        """Plain data (dicts, lists, tuples, str, int, float, None, tensors), read back with
        torch.load(weights_only=True): no code is unpickled."""
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / name) as tmp:
            torch.save({"key": self.key, **data}, tmp)

    def load_object(self, name: str) -> dict[str, Any] | None:
        path = self.folder / name
        if not path.exists():
            return None
        import torch

        try:
            data = torch.load(path, weights_only=True)
            if not isinstance(data, dict) or data.get("key") != self.key:
                raise ValueError("saved for other params or data")
            return data
        except Exception as error:  # truncated or foreign: redo that piece
            warn(f"{path} unreadable ({type(error).__name__}); redoing it")
            return None

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*")) if self.folder.is_dir() else []

    def remove(self) -> None:
        """Called once the stage's outputs are in place."""
        shutil.rmtree(self.folder, ignore_errors=True)

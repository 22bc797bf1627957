"""The content-addressed response cache: stable keys, atomic entries, corrupt entries detected."""

from __future__ import annotations

import json

from emoneurons.backends.cache import ResponseCache, cache_key, request_fields
from emoneurons.io.atomic import writer_tag


def _fields(**changes):
    base = dict(
        backend="openai",
        model="m",
        base_url="http://127.0.0.1:1/v1",
        messages=(("system", "be brief"), ("user", "héllo")),
        sampling={"temperature": 1.0, "max_tokens": 8},
        sample=0,
    )
    base.update(changes)
    return request_fields(**base)


def test_key_is_canonical_and_covers_every_field():
    key = cache_key(_fields())
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = dict(reversed(list(_fields().items())))
    reordered["sampling"] = {"max_tokens": 8, "temperature": 1.0}
    assert cache_key(reordered) == key
    variants = [
        _fields(backend="hf"),
        _fields(model="m2"),
        _fields(base_url="http://127.0.0.1:2/v1"),
        _fields(messages=(("system", "be brief"), ("user", "hello"))),
        _fields(messages=(("user", "be brief"), ("user", "héllo"))),
        _fields(sampling={"temperature": 0.5, "max_tokens": 8}),
        _fields(sample=1),
    ]
    keys = {cache_key(v) for v in variants}
    assert len(keys) == len(variants) and key not in keys


def test_put_then_get_round_trips_into_sharded_path(tmp_path):
    cache = ResponseCache(tmp_path)
    fields = _fields()
    key = cache_key(fields)
    assert cache.get(key) is None
    cache.put(key, fields, "réponse", 12, 3)
    path = tmp_path / key[:2] / f"{key}.json"
    assert cache.path(key) == path and path.is_file()
    hit = cache.get(key)
    assert (hit.text, hit.prompt_tokens, hit.completion_tokens) == ("réponse", 12, 3)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["request"] == fields and stored["key"] == key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_corrupt_entries_are_deleted_and_reported_absent(tmp_path):
    cache = ResponseCache(tmp_path)
    corruptions = {
        "truncated": lambda text: text[: len(text) // 2],
        "not json": lambda text: "\x00\x01garbage",
        "other request": lambda text: text.replace('"sample":0', '"sample":7'),
        "missing text": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "text"}),
        "text not a string": lambda text: json.dumps({**json.loads(text), "text": None}),
        "no usage": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "usage"}),
    }
    for number, (what, corrupt) in enumerate(corruptions.items()):
        fields = _fields(sample=0, model=f"m{number}")
        key = cache_key(fields)
        cache.put(key, fields, "fine", 1, 1)
        path = cache.path(key)
        path.write_text(corrupt(path.read_text()))
        assert cache.get(key) is None, what
        assert not path.exists(), what
    assert cache.corrupt_removed == len(corruptions)


def test_entry_under_the_wrong_name_is_not_trusted(tmp_path):
    cache = ResponseCache(tmp_path)
    fields_a, fields_b = _fields(sample=0), _fields(sample=1)
    key_a, key_b = cache_key(fields_a), cache_key(fields_b)
    cache.put(key_a, fields_a, "answer a", 1, 1)
    cache.path(key_b).parent.mkdir(parents=True, exist_ok=True)
    cache.path(key_b).write_bytes(cache.path(key_a).read_bytes())
    assert cache.get(key_b) is None
    assert cache.get(key_a).text == "answer a"


def test_a_dead_writers_temporary_entry_is_removed_a_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)  # ended: what a run killed mid-put leaves
    key = cache_key(_fields())
    shard = tmp_path / key[:2]
    shard.mkdir()
    host = writer_tag().rpartition("-")[0]
    dead = shard / f".{key}.{host}-{dead_pid}.0.tmp"
    live = shard / f".{key}.{host}-{os.getpid()}.7.tmp"  # a writer still running (this process)
    elsewhere = shard / f".{key}.other-host-{dead_pid}.3.tmp"  # another host's (a shared folder): never judged here
    for path in (dead, live, elsewhere):
        path.write_text('{"half')
    cache = ResponseCache(tmp_path)
    assert not dead.exists() and live.exists() and elsewhere.exists()
    assert cache.get(key) is None

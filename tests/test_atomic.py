"""Atomic outputs: an error inside the block leaves neither a new file nor a temporary behind."""

import pytest

from emoneurons.atomic import atomic_dir, atomic_path, write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_never_leaves_a_partial_folder(tmp_path):
    target = tmp_path / "counts"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "counts.safetensors").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "meta.json").write_text("{}")
    assert [p.name for p in target.iterdir()] == ["meta.json"]


def test_outputs_get_the_users_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755

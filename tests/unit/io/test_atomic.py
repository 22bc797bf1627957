"""Atomic outputs: an error inside the block leaves neither a new file nor a temporary behind."""

import shutil

import pytest

from emoneurons.io.atomic import atomic_dir, atomic_path, exchange_paths, write_json, writer_tag


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


def test_exchange_paths_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "new").write_text("new")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old").write_text("old")
    assert exchange_paths(tmp_path / "a", tmp_path / "b")  # Linux (renameat2) on the test machines' file systems
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"] and [p.name for p in (tmp_path / "a").iterdir()] == ["old"]


@pytest.mark.parametrize("can_swap", [True, False])
def test_atomic_dir_replaces_a_previous_folder_or_file_whole(tmp_path, monkeypatch, can_swap):
    """Over a previous folder (swapped in one step, or moved aside where the file system cannot
    swap) and over a previous file: the new folder alone is left, no temporary."""
    import emoneurons.io.atomic as atomic

    if not can_swap:
        monkeypatch.setattr(atomic, "exchange_paths", lambda a, b: False)
    target = tmp_path / "counts"
    for previous in ("folder", "file"):
        if previous == "folder":
            target.mkdir()
            (target / "old.json").write_text("old")
        else:
            target.write_text("a file")
        with atomic_dir(target) as tmp:
            (tmp / "meta.json").write_text("{}")
        assert [p.name for p in target.iterdir()] == ["meta.json"]
        assert [p.name for p in tmp_path.iterdir()] == ["counts"]
        shutil.rmtree(target)


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


def _writer(target, kind: str):
    """A child process inside atomic_path/atomic_dir of `target` with half an output written; it
    says "ready" on stdout, then waits for a line on stdin (or is SIGKILLed there)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from emoneurons.io.atomic import atomic_dir, atomic_path\n"
        f"target = Path({str(target)!r})\n"
        f"with (atomic_dir(target) if {kind == 'dir'!r} else atomic_path(target)) as tmp:\n"
        "    (tmp / 'half').write_text('half') if tmp.is_dir() else tmp.write_text('half')\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_writer_killed_mid_write_leaves_a_temp_that_the_next_write_removes(tmp_path, kind):
    target = tmp_path / ("out.json" if kind == "file" else "counts")
    other = tmp_path / "out.json.old"  # another output whose name starts like this one's
    process = _writer(target, kind)
    process.kill()  # SIGKILL: its `finally` never runs
    process.wait()
    left = _temps(tmp_path)
    host = writer_tag().rpartition("-")[0]
    assert len(left) == 1 and left[0].startswith(f".{target.name}.{host}-{process.pid}.")
    killed_other = _writer(other, "file")
    killed_other.kill()
    killed_other.wait()
    if kind == "file":
        write_json(target, {"a": 1})
    else:
        with atomic_dir(target) as tmp:
            (tmp / "meta.json").write_text("{}")
    # This output's leftover is gone; the other output's is its own next write's to remove.
    assert [name for name in _temps(tmp_path) if not name.startswith(".out.json.old.")] == []
    assert len(_temps(tmp_path)) == 1
    write_json(other, {})
    assert _temps(tmp_path) == []


def test_a_live_writers_temp_is_never_removed(tmp_path):
    target = tmp_path / "out.json"
    process = _writer(target, "file")
    try:
        theirs = _temps(tmp_path)
        write_json(target, {"mine": 1})  # a second writer of the same output while the first is alive
        assert _temps(tmp_path) == theirs and len(theirs) == 1
    finally:
        process.communicate("go\n", timeout=60)
    assert process.returncode == 0 and _temps(tmp_path) == []
    assert target.read_text() == "half"  # the first writer finished last

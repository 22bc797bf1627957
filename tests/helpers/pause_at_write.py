"""Run a stage script with a stop inside one of its writes to its outputs, so that a test can
SIGKILL it exactly there (tests/stages/test_faults.py). A random sleep lands in imports or model
loading; the writes are milliseconds at the end.

    python -P tests/helpers/pause_at_write.py STAGE.py [ARGS...]

EMONEURONS_WATCH: the stage's outputs (absolute paths, os.pathsep-separated). A watched path is
an output, a path under it, or a sibling whose name starts with `.<output name>.` (the atomic
writer's temporary) and what is under that. The write steps counted on watched paths:
- a write() to a file opened with open()/Path.open for writing: the stop comes after half of
  the data is written and flushed, so the file on disk is partial, as a kill mid-write leaves it;
- a rename/replace, removal or rmtree (audit events, PEP 578): the stop comes before it.
With EMONEURONS_PAUSE_AT=N the N-th step writes its description to EMONEURONS_PAUSED and the
stage sleeps there until killed; without it, every step is appended to EMONEURONS_EVENTS (one line
each) and the stage runs on. Rust writers (safetensors' save_file) are not seen; the Python
writes around them are."""

from __future__ import annotations

import builtins
import io
import os
import runpy
import sys
import time

OUTPUTS = [os.path.abspath(p) for p in os.environ.get("EMONEURONS_WATCH", "").split(os.pathsep) if p]
PAUSE_AT = int(os.environ.get("EMONEURONS_PAUSE_AT", "0"))
EVENTS = os.environ.get("EMONEURONS_EVENTS")
PAUSED = os.environ.get("EMONEURONS_PAUSED")
_real_open = io.open
_state = {"seen": 0, "inside": False}


def watched(path: object) -> str | None:
    """The absolute path when it is watched, else None (file descriptors are not)."""
    if isinstance(path, int) or not isinstance(path, (str, bytes, os.PathLike)):
        return None
    path = os.path.abspath(os.fsdecode(os.fspath(path)))
    for output in OUTPUTS:
        temp_start = os.path.join(os.path.dirname(output), "." + os.path.basename(output) + ".")
        if path == output or path.startswith(output + os.sep) or path.startswith(temp_start):
            return path
    return None


def step(description: str, before_pause=None) -> None:
    """Count one write step; at the chosen one, run `before_pause`, say so and sleep."""
    if _state["inside"]:
        return
    _state["inside"] = True  # the bookkeeping below opens files too
    try:
        _state["seen"] += 1
        line = f"{_state['seen']} {description}\n"
        if PAUSE_AT == 0:
            if EVENTS:
                with _real_open(EVENTS, "a") as events:
                    events.write(line)
            return
        if _state["seen"] != PAUSE_AT:
            return
        if before_pause is not None:
            before_pause()
        with _real_open(PAUSED + ".part", "w") as paused:
            paused.write(line)
        os.rename(PAUSED + ".part", PAUSED)
        while True:  # here until the test's SIGKILL
            time.sleep(60)
    finally:
        _state["inside"] = False


class PausingFile:
    """A file object whose write() is a step: half the data, flushed, then the stop."""

    def __init__(self, file, path: str) -> None:
        self._file, self._path = file, path

    def write(self, data):
        half = len(data) // 2

        def write_half() -> None:
            self._file.write(data[:half])
            self._file.flush()

        step(f"write {self._path} ({len(data)} chars)", write_half)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def __iter__(self):
        return iter(self._file)

    def __getattr__(self, name):
        return getattr(self._file, name)


def pausing_open(file, mode="r", *args, **kwargs):
    opened = _real_open(file, mode, *args, **kwargs)
    path = watched(file) if isinstance(mode, str) and any(c in mode for c in "wax+") else None
    return PausingFile(opened, path) if path and not _state["inside"] else opened


def audit(event: str, args: tuple) -> None:
    if event == "os.rename":  # os.rename and os.replace
        paths = [watched(args[0]), watched(args[1])]
    elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):
        paths = [watched(args[0])]
    else:
        return
    if any(paths):
        step(f"{event} {' -> '.join(os.fsdecode(os.fspath(p)) for p in args[:len(paths)])}")


def main() -> None:
    script, *rest = sys.argv[1:]
    builtins.open = io.open = pausing_open
    sys.addaudithook(audit)
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()

"""The library's one base error. Every error the library raises for something a user can fix (a
params key, a file or record, a model it cannot serve, a backend that refused) derives from
EmoneuronsError and says in one line what is wrong, where (the file, key or record) and what is
allowed. An entry point turns any of them into that line and exit status 1: runtime/stage_run.py's
run_stage for the stage scripts, its one_line_errors for the `emoneurons` commands. A bug (a wrong
argument from the code itself) stays a plain ValueError or TypeError and shows its traceback."""

from __future__ import annotations


class EmoneuronsError(Exception):
    """Something a user can fix, said in one line naming the file, key or record and what is allowed."""

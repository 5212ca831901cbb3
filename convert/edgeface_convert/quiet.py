"""Keeps TensorFlow's converter chatter off the terminal, unless something goes wrong."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout


@contextmanager
def captured_output() -> Iterator[None]:
    """Sends file descriptors 1 and 2 (C++'s output) and Python's sys.stdout and sys.stderr to a scratch file for
    the block: Python's streams too, since they need not be those descriptors (edgeface run inside another program,
    a notebook or a test).

    The converter prints saved-model listings and MLIR notes that are no use to a user; if the
    block raises, the captured text goes to stderr so the cause is not lost.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as scratch, open(scratch.fileno(), "w", closefd=False) as python_side:
        os.dup2(scratch.fileno(), 1)
        os.dup2(scratch.fileno(), 2)
        try:
            with redirect_stdout(python_side), redirect_stderr(python_side):
                yield
        except BaseException:
            _restore(saved)
            python_side.flush()
            scratch.seek(0)
            sys.stderr.write(scratch.read().decode(errors="replace"))
            raise
        else:
            _restore(saved)


def _restore(saved: list[int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for target, duplicate in zip((1, 2), saved):
        os.dup2(duplicate, target)
        os.close(duplicate)

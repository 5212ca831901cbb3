"""The folder source of `edgeface watch`: which image files in a folder are ready to be read.

A file is ready when it is complete, not when it appears: with inotify that is when a writer
closes it (IN_CLOSE_WRITE) or when it is moved in (the usual "write to a temporary name, then
rename" of cameras and uploaders). Network shares send no inotify events, so `poll` mode lists
the folder every `poll_interval` seconds and takes a file once its size and modification time
have stayed the same between two looks.

Events wait in a bounded queue. When it is full, or when the kernel's own event queue
overflowed (watchdog then logs a warning, which is how we learn of it), events are dropped and a
rescan is requested instead: `rescan()` lists every image file, which the daemon pushes through
its pending table in chunks, so a burst of 10,000 files costs disk, not memory. Files already
logged with the same content are recognised by the daemon and not processed twice.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from edgeface.paths import absolute, file_identity, folder_files, is_image_name
from edgeface.wakeup import Wakeup

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1024
WATCHDOG_LOGGER = "watchdog.observers.inotify_c"  # where watchdog reports a kernel queue overflow


class _OverflowListener(logging.Handler):
    """Turns watchdog's "queue overflowed" warning into a rescan request."""

    def __init__(self, on_overflow: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow.set()


class _CompleteFiles(FileSystemEventHandler):
    """Offers a path when a file was closed after writing or moved into the folder, and says which file was
    renamed away (a temporary name the writer renamed when done)."""

    def __init__(self, offer: Callable[[str], None], renamed: Callable[[str], None]) -> None:
        self._offer, self._renamed = offer, renamed

    def on_closed(self, event: FileClosedEvent) -> None:
        self._offer(event.src_path)

    def on_moved(self, event: FileMovedEvent) -> None:
        if not event.is_directory:
            self._renamed(event.src_path)
            self._offer(event.dest_path)


class FolderSource:
    """Image files that became ready in `root`.

    `excluded` folders (where finished files are moved) are never offered. Call `start()`, then
    `take()` in the processing loop and drain `rescan()` whenever `needs_rescan()` says so; it
    does at start, to pick up the backlog that arrived while the daemon was stopped.
    """

    def __init__(
        self,
        root: str | Path,
        recursive: bool = False,
        poll: bool = False,
        poll_interval: float = 5.0,
        excluded: tuple[str | Path, ...] = (),
        settle: float = 2.0,
    ) -> None:
        """`settle`: a rescan leaves files changed less than this many seconds ago for a second look, as they may
        still be being written (their close event, if the observer saw the write end, takes them meanwhile)."""
        self.root = Path(absolute(root))
        self.recursive, self.poll, self.poll_interval, self.settle = recursive, poll, poll_interval, settle
        self._excluded = tuple(absolute(path) + os.sep for path in excluded)
        self._ready: queue.Queue[str] = queue.Queue(QUEUE_SIZE)
        self._wakeup = Wakeup()  # an offer, or `wake()`, ends the wait in `take`
        self._rescan = threading.Event()
        self._rescan.set()  # the backlog
        self._second_look_at: float | None = None
        self._observer: InotifyObserver | None = None
        self._overflow_listener = _OverflowListener(self._rescan)
        self._last_look: dict[str, tuple[int, int]] = {}  # poll mode: path -> (size, mtime) seen last time
        self._taken: dict[str, tuple[int, int]] = {}  # poll mode: what was handed out already
        self._next_poll = 0.0
        self._identity: tuple[int, int] | None = None
        self._said: set[str] = set()  # problems of the listing already in the journal
        self._renamed: dict[str, None] = {}  # paths renamed away, oldest first (see renamed_away)

    def start(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"the watched folder {self.root} does not exist or is not a folder")
        if self.poll:
            return
        logging.getLogger(WATCHDOG_LOGGER).addHandler(self._overflow_listener)
        # Full events: a file moved in from an unwatched folder is a move, not a "created" (which
        # would also fire for a file that has only begun to be written).
        self._observer = InotifyObserver(generate_full_events=True)
        self._observer.schedule(_CompleteFiles(self._offer, self._note_renamed), str(self.root), recursive=self.recursive)
        self._observer.start()
        self._identity = file_identity(self.root)

    def restart(self) -> bool:
        """Watches the folder again once it is back (after it was removed, replaced or unmounted) and
        asks for a rescan; False while it is still missing."""
        self.stop()
        if not self.root.is_dir():
            return False
        self.start()
        self._rescan.set()
        return True

    def stop(self) -> None:
        logging.getLogger(WATCHDOG_LOGGER).removeHandler(self._overflow_listener)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    @property
    def alive(self) -> bool:
        """False when the folder is gone or is another folder now (its watches went with the old
        one), or the observer thread died. Poll mode needs no watches: it simply lists again."""
        if self.poll:
            return True
        observing = self._observer is not None and self._observer.is_alive()
        return observing and file_identity(self.root) == self._identity

    def wanted(self, path: str) -> bool:
        """Whether `path` is an image below the root that is not in an excluded folder. A hidden name (a leading
        dot) is never an input: uploaders write under one (`.tmp-1.jpg`, rsync's `.name.XXXXXX`) and rename
        the file when it is whole."""
        if not is_image_name(path) or path.startswith(self._excluded) or os.path.basename(path).startswith("."):
            return False
        parent = os.path.dirname(path)
        return parent == str(self.root) or (self.recursive and parent.startswith(str(self.root) + os.sep))

    def renamed_away(self, path: str) -> bool:
        """Whether `path` was renamed (to a name offered in its turn) since it was offered: a pending name that
        no longer exists for that reason is no input, and ends without an outcome."""
        return path in self._renamed

    def _note_renamed(self, path: str) -> None:
        if len(self._renamed) >= QUEUE_SIZE:
            self._renamed.pop(next(iter(self._renamed)))  # the oldest: memory stays bounded
        self._renamed[absolute(path)] = None

    def _offer(self, path: str) -> None:
        path = absolute(path)
        if not self.wanted(path):
            return
        try:
            self._ready.put_nowait(path)
        except queue.Full:
            self._rescan.set()  # dropped: the rescan will find it
        self._wakeup.wake()

    def take(self, timeout: float, limit: int = QUEUE_SIZE) -> list[str]:
        """Paths that became ready, waiting up to `timeout` seconds for the first one (less after `wake()`)."""
        if self.poll:
            return self._poll(timeout)
        taken = self._taken_now(limit)
        if not taken and self._wakeup.wait(timeout):
            taken = self._taken_now(limit)
        return taken

    def wake(self) -> None:
        """Ends the wait in `take` now (safe in a signal handler: SIGTERM is then noticed at once)."""
        self._wakeup.wake()

    def _taken_now(self, limit: int) -> list[str]:
        taken: list[str] = []
        try:
            while len(taken) < limit:
                taken.append(self._ready.get_nowait())
        except queue.Empty:
            pass
        return taken

    def needs_rescan(self) -> bool:
        second_look = self._second_look_at is not None and time.monotonic() >= self._second_look_at
        return (self._rescan.is_set() or second_look) and not self.poll

    def rescan(self) -> Iterator[str]:
        """Every image file in the folder that has not changed for `settle` seconds, sorted by name
        within each folder (the backlog); newer ones get a second look later."""
        self._rescan.clear()
        self._second_look_at = None
        settled = time.time() - self.settle
        for path in self._listing():
            try:
                changed = os.stat(path).st_mtime
            except OSError:
                continue  # gone since it was listed
            if changed > settled:
                self._second_look_at = time.monotonic() + self.settle
                continue
            yield path

    def _listing(self) -> Iterator[str]:
        """Every wanted image file now in the folder, as `folder_files` walks it; what the walk leaves out is
        said once per daemon, not at every listing."""
        for path in folder_files(self.root, self.recursive, self._say_once, self._excluded):
            if self.wanted(path):
                yield path

    def _say_once(self, problem: str) -> None:
        if problem not in self._said:
            self._said.add(problem)
            logger.warning("%s", problem)

    def _poll(self, timeout: float) -> list[str]:
        """Poll mode: files whose size and modification time held still since the last look."""
        wait = self._next_poll - time.monotonic()
        if wait > timeout:
            self._wakeup.wait(timeout)
            return []
        if wait > 0 and self._wakeup.wait(wait):
            return []  # woken: the look keeps its time
        self._next_poll = time.monotonic() + self.poll_interval
        look: dict[str, tuple[int, int]] = {}
        for path in self._listing():
            try:
                status = os.stat(path)
            except OSError:
                continue  # gone between listing and looking
            look[path] = (status.st_size, status.st_mtime_ns)
        ready = [path for path, stamp in look.items() if self._last_look.get(path) == stamp != self._taken.get(path)]
        self._taken = {p: s for p, s in self._taken.items() if p in look} | {path: look[path] for path in ready}
        self._last_look = look
        return ready

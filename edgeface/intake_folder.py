"""The folder intake of `edgeface watch`: every file that arrives ends as one outcome in the log.

A file that becomes ready is first noted in the log's `pending` table; its outcome (a result or a
recorded error) replaces that note in one transaction, and only then is the file moved to
`move_done`/`move_failed`. A restart, however abrupt, resumes the pending files, and a file whose
content is already logged is recognised and not recorded twice. While the log fails, files wait
in the folder (or in `pending`), and the folder is listed again once the log takes writes.

A file may change while it is processed (a camera rewriting `snapshot.jpg`, a writer renaming a new
photo over it): the file is only moved if it is still what was read, otherwise it is taken again as
a new input. A failure to read or decode waits until the file has settled (`edgeface.settling`). A
file that cannot be moved stays where it is, and the log says why; later starts leave it be.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from edgeface.clock import now
from edgeface.folder import FolderSource
from edgeface.images import ImageError, decode, read_input
from edgeface.intake import IDLE_WAIT, Host
from edgeface.moves import move_below, put_back
from edgeface.paths import Stamp, file_stamp
from edgeface.results import ImageResult, Status
from edgeface.settings import FolderSettings
from edgeface.settling import Unsettled
from edgeface.store import LogError

logger = logging.getLogger("edgeface.watch")

BATCH = 4  # files processed per commit: few enough for low latency, enough to share the fsync
BACKLOG_CHUNK = 500  # paths noted as pending per transaction while draining a rescan
MAX_ATTEMPTS = 3  # tries of a file that was in hand whenever the daemon died


class FolderIntake:
    """Files that arrive in one folder (see the module docstring)."""

    waiting = "files wait in the folder"

    def __init__(self, settings: FolderSettings, kept_out: tuple[str, ...] = ()) -> None:
        """`kept_out`: folders of the daemon's own output (saved crops) that must never be taken as inputs."""
        self.moves = {Status.DONE: settings.move_done, Status.ERROR: settings.move_failed}
        self.durable = any(self.moves.values())
        self.source = FolderSource(settings.path, settings.recursive, settings.poll, settings.poll_interval,
                                   excluded=(*(path for path in self.moves.values() if path), *kept_out),
                                   settle=settings.settle)  # fmt: skip
        self._unsettled = Unsettled(settings.settle)
        self.name = f"folder:{self.source.root}"
        self._catch_up = False  # list the folder again: files that arrived while the log failed are in it
        self._folder_lost = False
        self._suspects: set[str] | None = None  # pending at start: maybe what ended the last run

    def run(self, host: Host) -> int:
        self.source.start()
        host.ready(f"watching {self.source.root}")
        logger.info("watching %s with %s", self.source.root, host.pipeline.recognizer.path)
        try:
            while not host.stopping:
                if host.log.fault:
                    host.pause(host.log.seconds_to_retry())
                    if not host.stopping:
                        host.log.reopen("catching up")
                    continue
                try:
                    self._step(host)
                except LogError as error:
                    host.log.failed(error)
                    self._catch_up = True
        finally:
            self.source.stop()
        return 0

    def wake(self) -> None:
        self.source.wake()

    def _step(self, host: Host) -> None:
        """One turn of the loop: housekeeping, the backlog when due, a batch of pending files, new arrivals."""
        host.tick()
        host.log.check()
        if not self._folder_present():
            time.sleep(IDLE_WAIT)  # pending files wait: they are not errors, their folder is away
            return
        if self._catch_up or self.source.needs_rescan():
            self._note_backlog(host)
            self._catch_up = False
        again = self._unsettled.due()
        if again:
            host.log.log.add_pending(again, self.name)
        waiting = host.log.log.next_pending(BATCH, self.name)  # another daemon's files are its own
        if waiting and self._suspects is None:
            self._suspects = set(waiting)  # what was in hand if the last run died: tried one by one
        if waiting and self._suspects & set(waiting):
            waiting = self._try_suspect(host, waiting[0])
        if waiting:
            self._process_files(host, waiting)
        arrived = self.source.take(0 if waiting else IDLE_WAIT)
        if arrived:
            self._note_arrivals(host, arrived)  # if this fails, the catch-up listing finds them

    def _try_suspect(self, host: Host, path: str) -> list[str]:
        """A file that was pending when the daemon last started may be what stopped it (a decoder
        crash, the memory limit): each try is counted first, and after MAX_ATTEMPTS it ends as an
        error without being decoded again, so one file cannot keep the daemon in a restart loop.
        Returns the files to process now."""
        self._suspects.discard(path)
        attempts = host.log.log.count_attempt(path)
        if attempts <= MAX_ATTEMPTS:
            return [path]
        error = f"the daemon stopped {attempts - 1} times while this file was in hand; not tried again"
        self._finish(host, _Batch([ImageResult.unreadable(path, error)]))
        return []

    def _folder_present(self) -> bool:
        """Whether the watched folder is there and watched; re-watches it when it comes back."""
        if self.source.alive:
            return True
        if not self._folder_lost:
            logger.error("the watched folder %s is gone or was replaced; waiting for it to come back", self.source.root)
            self._folder_lost = True
        if self.source.restart():
            logger.warning("the watched folder %s is back: watching it again and listing what is in it", self.source.root)
            self._folder_lost = False
        return not self._folder_lost

    def _note_arrivals(self, host: Host, paths: list[str]) -> None:
        """Notes `paths` as pending; a name that is not UTF-8 (which the log cannot hold as text,
        and which would not survive the pending table) ends at once as an error."""
        badly_named = [path for path in paths if not _utf8(path)]
        host.log.log.add_pending([path for path in paths if _utf8(path)], self.name)
        if badly_named:
            self._finish(host, _Batch([ImageResult.unreadable(path, "the file name is not valid UTF-8") for path in badly_named]))

    def _note_backlog(self, host: Host) -> None:
        chunk: list[str] = []
        for path in self.source.rescan():
            chunk.append(path)
            if len(chunk) == BACKLOG_CHUNK:
                self._note_arrivals(host, chunk)
                chunk = []
                host.tick()
        if chunk:
            self._note_arrivals(host, chunk)

    def _process_files(self, host: Host, paths: list[str]) -> None:
        """Outcomes for `paths`, committed together, then the files moved; stops early on SIGTERM."""
        batch = _Batch()
        for path in paths:
            if host.stopping:
                break  # the rest stay pending for the next start
            self._process_file(host, path, batch)
        self._finish(host, batch)

    def _process_file(self, host: Host, path: str, batch: _Batch) -> None:
        """Adds the outcome of `path` to `batch`, or notes it as already logged, stale or held."""
        log = host.log.log
        stamp = file_stamp(path)  # before reading: any change from here on is seen before the move
        try:
            input_file = read_input(path)
        except ImageError as error:
            if not os.path.lexists(path) and (log.was_read(path) or self.source.renamed_away(path)):
                batch.dropped.append(path)  # a late event for a file logged and moved, or a name renamed away
            elif self._unsettled.hold(path, stamp):
                batch.dropped.append(path)  # maybe still being written: looked at again once due
            elif log.unreadable_logged(path, str(error)):
                batch.known.append((path, None, Status.ERROR))
            else:
                batch.add(ImageResult.unreadable(path, str(error)), stamp)
            return
        earlier = log.outcome_of(input_file.path, input_file.sha256)
        if earlier:
            self._unsettled.settled(path)
            batch.known.append((path, input_file.sha256, earlier))
            batch.stamps[path] = stamp
            return
        result = host.pipeline.process(input_file)
        if result.error and self._unsettled.hold(path, stamp):
            batch.dropped.append(path)
            return
        self._unsettled.settled(path)
        batch.add(result, stamp)

    def _finish(self, host: Host, batch: _Batch) -> None:
        """Commits the batch's results (and forgets the pending notes of its other inputs), then
        reports and moves the files."""
        results = batch.results
        input_ids = host.log.recording.images(results, self.name, host.log.model)
        if host.crops:
            self._save_crops(host, results, input_ids)
        host.log.log.drop_pending([path for path, _, _ in batch.known] + batch.dropped)
        host.log.check()  # committed to a log deleted meanwhile is not committed: keep the files
        for result in results:
            if result.error:
                host.counts.failed += 1
                logger.error("%s: %s", result.path, result.error)
            else:
                host.counts.done += 1
                logger.info("%s: %s", result.path, result.faces_text())
        host.counts.already += len(batch.known)
        left = {path for path, sha256, _ in batch.known if host.log.log.left_in_place(path, sha256)}
        changed = []
        for path, sha256, status in [*((r.path, r.sha256, r.status) for r in results), *batch.known]:
            stamp = batch.stamps.get(path)
            if path in batch.stamps and file_stamp(path) not in (stamp, None):
                changed.append(path)
            elif path not in left:
                changed += self._move(host, path, sha256, status, stamp)
        if changed:
            logger.info("changed while it was processed, so taken again: %s", ", ".join(changed))
            host.log.log.add_pending(changed, self.name)

    def _save_crops(self, host: Host, results: list[ImageResult], input_ids: list[int]) -> None:
        """With save_crops: each face's crop, written before the file is moved, named in the log."""
        wall = now().wall
        for result, input_id in zip(results, input_ids):
            if not result.faces:
                continue
            try:
                pixels = decode(read_input(result.path).content)
            except ImageError as error:
                logger.warning("%s: no crops saved: %s", result.path, error)
                continue
            paths = host.crops.save(pixels, [face.box for face in result.faces], wall, str(input_id))
            host.log.log.set_crops(input_id, paths)

    def _move(self, host: Host, path: str, sha256: str | None, status: str, stamp: Stamp | None) -> list[str]:
        """Moves a file whose outcome is committed to its folder, keeping its path below the root; a file that
        cannot be moved stays, and the log says why. A file that changed while it was moved (a writer opened
        it by name in between) is put back: returns the name it is back under, to be taken again."""
        target_folder = self.moves.get(status)
        if not target_folder or not os.path.lexists(path):
            return []
        try:
            moved = move_below(path, self.source.root, target_folder)
        except (OSError, ValueError) as error:  # ValueError: not below the watched folder, so not ours to move
            reason = f"cannot move it to {target_folder}: {error}"
            logger.error("%s: %s; it stays where it is", path, reason)
            host.log.log.note_not_moved(path, sha256, reason)
            return []
        if stamp is None or _same_content(file_stamp(moved), stamp):
            return []
        try:
            return [put_back(moved, path)]
        except OSError as error:
            logger.error("%s changed while it was moved to %s, and cannot be put back: %s", path, moved, error)
            return []


@dataclass
class _Batch:
    """What one turn of the loop makes of its files: outcomes to commit, inputs already logged, and names that
    need no outcome now (stale events, or files held until they settle)."""

    results: list[ImageResult] = field(default_factory=list)
    known: list[tuple[str, str | None, str]] = field(default_factory=list)  # (path, sha256, earlier status)
    dropped: list[str] = field(default_factory=list)
    stamps: dict[str, Stamp | None] = field(default_factory=dict)  # each file as it was read

    def add(self, result: ImageResult, stamp: Stamp | None) -> None:
        self.results.append(result)
        self.stamps[result.path] = stamp


def _same_content(moved: Stamp | None, read: Stamp) -> bool:
    """Whether a moved file still has the size and modification time it was read with (a copy to another file
    system keeps both, not the inode)."""
    return moved is not None and moved[2:] == read[2:]


def _utf8(path: str) -> bool:
    """Whether a file name decoded by Python is valid UTF-8 (undecodable bytes become surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

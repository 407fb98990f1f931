"""Where stored results live: a folder (local, or shared by several hosts) or an object store.

```
ResultSink ──create(key)──▶ ResultWriter.write … finish ──▶ <location>/<namespace>/<task>.arrows
FetchResult ──open(key)──▶ read in pieces        StoredResult argument ──read_whole(key, limit)
RetryGraph ──size(key)                           sweep (TTL) ──delete(key)
```

``--results-dir`` is a folder (as before) or a URI: ``s3://bucket/prefix`` (``pyarrow.fs``;
credentials, region and endpoint from the standard AWS variables and files, or the URI's
query as pyarrow reads it) or ``gs://bucket/prefix``. Keys are built here from a task's
namespace and id, never from what a client sent. Only ``finish`` makes a result visible: a
folder writes ``<task>.partial`` and renames it; an object store completes its (multipart)
upload. Every method blocks: folders are cheap enough to call from the event loop where the
callers did so before (``remote`` is False), object stores are called from threads.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs as pafs

from ._config import ConfigError
from ._store import TaskRecord

log = logging.getLogger(__name__)

#: Schemes of object stores that ``pyarrow.fs`` can open from a URI.
OBJECT_SCHEMES = ("s3", "gs", "gcs")
#: How long GCS calls retry before they fail (at start: before the server gives up).
GCS_RETRY_SECONDS = 30.0
#: Bytes an object store reads per request when a result is streamed out.
READ_BLOCK_BYTES = 8 << 20
_KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


class Readable(Protocol):
    """An open stored result."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class ResultWriter(Protocol):
    """One result being written: invisible until ``finish``."""

    def write(self, data: bytes, /) -> object: ...

    def finish(self) -> None:
        """Make the written bytes the result (OSError if storage refuses)."""

    def discard(self) -> None:
        """Drop what was written, finished or not; never raises."""


class ResultStorage(Protocol):
    """A place for stored results; see the module docstring."""

    #: Shown in logs and messages (never credentials).
    location: str
    #: Whether each call is a network round trip (run it in a thread, never on the loop).
    remote: bool

    def create(self, key: str) -> ResultWriter: ...

    def open(self, key: str) -> Readable:
        """FileNotFoundError if there is no such result."""

    def read_whole(self, key: str, limit: int) -> bytes:
        """The whole result; ResultTooLargeError past ``limit`` bytes, FileNotFoundError if
        there is none."""

    def size(self, key: str) -> int | None:
        """The result's size, None if there is none."""

    def delete(self, key: str) -> None:
        """Delete the result; a missing one is fine."""

    def forget_partial(self, key: str) -> None:
        """Remove what a writer that died left of the result."""

    def check(self) -> None:
        """ConfigError unless results can be written, read and deleted here."""


class ResultTooLargeError(Exception):
    """A result read whole is larger than the caller's limit."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the result is {size} bytes")
        self.size = size


def result_key(task: TaskRecord) -> str:
    """``<namespace>/<task_id>.arrows``: server-made names only (ValueError otherwise)."""
    if not (_KEY_PART.match(task.namespace) and _KEY_PART.match(task.task_id)):
        raise ValueError(f"no result key for task {task.task_id[:64]!r}")
    return f"{task.namespace}/{task.task_id}.arrows"


class LocalStorage:
    """A folder (its own, or one shared by several hosts, e.g. NFS): temp file + rename."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        #: Folders known to exist (a folder removed since is made again by the writer).
        self._folders: set[str] = set()

    def create(self, key: str) -> LocalWriter:
        # Plain strings and os calls: this runs on the event loop once per stored result, and
        # pathlib's parsing plus a mkdir that fails for every result but the first cost twice
        # as much as the file itself (~110 against ~60 us).
        final = f"{self.location}/{key}"
        folder = final.rpartition("/")[0]
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return LocalWriter(os.path.splitext(final)[0] + ".partial", final, folder)

    def open(self, key: str) -> Readable:
        return (self.root / key).open("rb")

    def read_whole(self, key: str, limit: int) -> bytes:
        with (self.root / key).open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise ResultTooLargeError(size)
            return file.read()

    def size(self, key: str) -> int | None:
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def forget_partial(self, key: str) -> None:
        (self.root / key).with_suffix(".partial").unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise ConfigError(
                f"--results-dir {self.location}: cannot write there ({exc.strerror or exc})"
            ) from None


class LocalWriter:
    """Writes ``<task>.partial``; ``finish`` renames it to the result."""

    def __init__(self, partial: str, final: str, folder: str) -> None:
        self._partial = partial
        self._final = final
        try:
            self._file = open(partial, "wb")  # noqa: SIM115 (finish or discard closes it)
        except FileNotFoundError:  # the folder was removed since it was made
            os.makedirs(folder, exist_ok=True)
            self._file = open(partial, "wb")  # noqa: SIM115
        self.write = self._file.write

    def finish(self) -> None:
        self._file.close()
        os.replace(self._partial, self._final)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        for path in (self._partial, self._final):
            with contextlib.suppress(OSError):
                os.unlink(path)


class ObjectStorage:
    """An object store bucket and prefix, through ``pyarrow.fs``."""

    remote = True

    def __init__(self, filesystem: pafs.FileSystem, base: str, location: str) -> None:
        self._fs = filesystem
        self._base = base.strip("/")
        self.location = location

    def _path(self, key: str) -> str:
        return f"{self._base}/{key}"

    def create(self, key: str) -> ObjectWriter:
        return ObjectWriter(self._fs, self._path(key))

    def open(self, key: str) -> Readable:
        stream: Readable = self._fs.open_input_stream(
            self._path(key), compression=None, buffer_size=READ_BLOCK_BYTES
        )
        return stream

    def read_whole(self, key: str, limit: int) -> bytes:
        with self._fs.open_input_file(self._path(key)) as file:  # one HEAD, then one GET
            size = file.size()
            if size > limit:
                raise ResultTooLargeError(size)
            data: bytes = file.read()
            return data

    def size(self, key: str) -> int | None:
        info = self._fs.get_file_info(self._path(key))
        return None if info.type == pafs.FileType.NotFound else int(info.size)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.delete_file(self._path(key))

    def forget_partial(self, key: str) -> None:
        """Nothing to do: an upload never completed is invisible (a bucket lifecycle rule
        aborts incomplete multipart uploads, see docs/results.md)."""

    def check(self) -> None:
        bucket = self._base.split("/", 1)[0]
        probe = self._path(f".tilefn-probe-{uuid.uuid4().hex}")
        try:
            if self._fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise ConfigError(f"--results-dir {self.location}: bucket {bucket!r} not found")
            with self._fs.open_output_stream(probe) as out:
                out.write(b"probe")
            self._fs.delete_file(probe)
        except (OSError, pyarrow.ArrowException) as exc:
            raise ConfigError(f"--results-dir {self.location}: {exc}") from None


class ObjectWriter:
    """One object, uploaded in parts as it is written; it exists once ``finish`` completes the
    upload. pyarrow cannot abort an upload, so ``discard`` completes and deletes it (the task's
    record never names it, so nobody reads it in between)."""

    def __init__(self, filesystem: pafs.FileSystem, path: str) -> None:
        self._fs = filesystem
        self._path = path
        self._stream = filesystem.open_output_stream(path)
        # A cancelled call leaves its write running in a thread: the stream is not thread-safe,
        # so discard waits for it.
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)

    def finish(self) -> None:
        with self._lock:
            self._stream.close()

    def discard(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError, pyarrow.ArrowException):
                self._stream.close()
            try:
                self._fs.delete_file(self._path)
            except (OSError, pyarrow.ArrowException) as exc:  # no record names it: harmless
                log.warning("a discarded result stays in the bucket: %s", exc)


def open_storage(spec: str, default: Path) -> ResultStorage:
    """The storage ``--results-dir`` names (``default`` when empty), checked: ConfigError if
    it is unusable."""
    storage = _parse(spec, default)
    storage.check()
    return storage


def _parse(spec: str, default: Path) -> ResultStorage:
    if "://" not in spec:
        return LocalStorage(Path(spec or default).resolve())
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    location = f"{scheme}://{parts.hostname or ''}{parts.path}"  # no credentials, no query
    if scheme == "file":
        return LocalStorage(Path(parts.path).resolve())
    if scheme not in OBJECT_SCHEMES:
        raise ConfigError(
            f"--results-dir: unsupported scheme {scheme!r}; use a folder, s3://bucket/prefix "
            "or gs://bucket/prefix"
        )
    if not parts.hostname:
        raise ConfigError(f"--results-dir {location}: the URI names no bucket")
    try:
        filesystem, base = pafs.FileSystem.from_uri(spec)
    except (OSError, pyarrow.ArrowException) as exc:  # pyarrow may quote the whole URI
        why = str(exc).replace(spec, location).replace(parts.password or spec, "***")
        raise ConfigError(f"--results-dir {location}: {why}") from None
    return ObjectStorage(_bounded(filesystem), base, location)


def _bounded(filesystem: pafs.FileSystem) -> pafs.FileSystem:
    """S3 with writes that block while a part uploads (memory stays at one part per result,
    however slow the store) and small results sent in one request; GCS that gives up
    retrying after ``GCS_RETRY_SECONDS`` (its default, 15 minutes, would hang the start)."""
    _, (options,) = filesystem.__reduce__()  # every option from_uri set, credentials included
    if isinstance(filesystem, pafs.S3FileSystem):
        changes = {"background_writes": False, "allow_delayed_open": True}
        return pafs.S3FileSystem(**(options | changes))
    if isinstance(filesystem, pafs.GcsFileSystem):
        limit = datetime.timedelta(seconds=GCS_RETRY_SECONDS)
        return pafs.GcsFileSystem(**(options | {"retry_time_limit": limit}))
    return filesystem

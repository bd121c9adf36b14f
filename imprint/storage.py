"""Where data lives: a local or shared path, or an object in a store (``s3://``, ``gs://``).

A :class:`Location` is what every data location of imprint is (``--out``, ``--records``, ``--shards``,
``verify``, ``preview``, the loader, ``eval --test``). It is either

- **local**: a ``pathlib.Path`` on a local or shared filesystem (NFS, Lustre, a mounted bucket). Every
  operation is the ``os`` / ``pathlib`` call it always was: nothing goes through ``pyarrow.fs``, so local
  runs cost what they did; or
- **remote**: ``s3://bucket/key`` or ``gs://bucket/key``, reached through ``pyarrow.fs`` (S3 and GCS are
  built into pyarrow). Credentials come from each store's standard chain: for S3 the ``AWS_*`` variables,
  ``~/.aws/``, an instance or pod role, and ``AWS_ENDPOINT_URL`` for an S3-compatible store (MinIO, Ceph,
  R2, ...); for GCS the application-default credentials. ``file://`` URIs are local paths.

A store's filesystem is resolved once per process (per scheme, bucket and endpoint) and shared by every
location in that bucket. A location pickles as its URI: a Ray worker resolves it with its own environment,
so every node needs the credentials (and ``AWS_ENDPOINT_URL``), as any client of the store does.

Object stores have no folders and no rename: :mod:`imprint.io` writes an object with one upload that
becomes visible whole when it completes, and :mod:`imprint.parts` writes a part's marker after the part,
so readers, which take only marked parts, never see an unfinished one.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from imprint.errors import ImprintError

REMOTE_SCHEMES = ("s3", "gs")
_ALIASES = {"gcs": "gs", "s3a": "s3"}


class StorageError(ImprintError):
    """A location that cannot be used as asked; the message says what to do."""


def _filesystem_hint(scheme: str) -> str:
    if scheme == "s3":
        return ("check that the bucket exists, the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                "~/.aws or an instance role) and, for an S3-compatible store, AWS_ENDPOINT_URL")
    return "check that the bucket exists and the Google application-default credentials"


def storage_error(where: object, action: str, exc: BaseException) -> StorageError:
    """A one-line :class:`StorageError` for an ``OSError`` met while ``action`` on ``where``."""
    scheme = str(where).split("://", 1)[0] if "://" in str(where) else ""
    hint = _filesystem_hint(scheme) if scheme in REMOTE_SCHEMES else "check the path and its permissions"
    detail = " ".join(str(exc).split())[:300]
    return StorageError(f"cannot {action} {where} ({type(exc).__name__}: {detail}); {hint}")


@functools.lru_cache(maxsize=64)
def _resolve(scheme: str, bucket: str, endpoint: str | None) -> pafs.FileSystem:
    """The filesystem of one bucket (``endpoint`` is part of the key: the AWS SDK reads it from the env)."""
    try:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}/")
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise storage_error(f"{scheme}://{bucket}", "open the store of", exc) from None
    return fs


class Location:
    """A file or folder: a local ``Path``, or a key in an object store (see the module docstring).

    It reads like a ``Path``: ``loc / "name"``, ``.name``, ``.parent``, ``.exists()``, ``.glob("part-*")``;
    ``str(loc)`` is the path or the URI. :meth:`of` takes a ``str`` (a path or a URI), a ``Path`` or a
    location. ``os.fspath`` works on local locations only: code that needs a real file says so with
    :meth:`local_path`, which explains what to do when it is given a URI.
    """

    __slots__ = ("_path", "_scheme", "_key")

    def __init__(self, where: str | os.PathLike[str]) -> None:
        self._path: Path | None = None
        self._scheme, self._key = "", ""
        if isinstance(where, Location):
            self._path, self._scheme, self._key = where._path, where._scheme, where._key
            return
        text = os.fspath(where)
        if "://" in text:
            scheme, rest = text.split("://", 1)
            scheme = _ALIASES.get(scheme.lower(), scheme.lower())
            if scheme == "file":
                self._path = Path(rest)
            elif scheme in REMOTE_SCHEMES:
                key = rest.strip("/")
                if not key:
                    raise StorageError(f"{text} names no bucket: write {scheme}://BUCKET/PATH")
                self._scheme, self._key = scheme, key
            else:
                raise StorageError(f"{text}: imprint reads local or shared paths, s3:// and gs:// URIs, "
                                   f"not {scheme}://; mount the store as a folder or copy the data")
        else:
            self._path = Path(text)

    @classmethod
    def of(cls, where: str | os.PathLike[str] | Location) -> Location:
        return where if isinstance(where, Location) else cls(where)

    @classmethod
    def _remote(cls, scheme: str, key: str) -> Location:
        loc = cls.__new__(cls)
        loc._path, loc._scheme, loc._key = None, scheme, key
        return loc

    # --- what it is ----------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self._path is not None

    @property
    def scheme(self) -> str:
        """``s3`` or ``gs``; ``""`` for a local path."""
        return self._scheme

    def local_path(self, what: str = "this location") -> Path:
        """The local ``Path``; a :class:`StorageError` saying ``what`` needs a filesystem for a URI."""
        if self._path is None:
            raise StorageError(f"{what} must be a local or shared folder, not {self}: object storage holds "
                               f"records and shards only; pass a filesystem path (docs/cluster.md: where data lives)")
        return self._path

    def __fspath__(self) -> str:
        return str(self.local_path())

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem (resolved once per process and bucket; local: ``LocalFileSystem``)."""
        if self._path is not None:
            return _LOCAL_FS
        bucket = self._key.split("/", 1)[0]
        return _resolve(self._scheme, bucket, os.environ.get("AWS_ENDPOINT_URL") if self._scheme == "s3" else None)

    @property
    def fs_path(self) -> str:
        """The path inside :attr:`fs` (``bucket/key`` for a store)."""
        return str(self._path) if self._path is not None else self._key

    # --- path arithmetic -----------------------------------------------------------------------------

    def __truediv__(self, name: str) -> Location:
        if self._path is not None:
            return Location(self._path / name)
        return Location._remote(self._scheme, f"{self._key}/{str(name).strip('/')}")

    @property
    def name(self) -> str:
        return self._path.name if self._path is not None else self._key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        name = self.name
        return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name

    @property
    def parent(self) -> Location:
        if self._path is not None:
            return Location(self._path.parent)
        head = self._key.rsplit("/", 1)[0] if "/" in self._key else self._key
        return Location._remote(self._scheme, head)

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def __str__(self) -> str:
        return str(self._path) if self._path is not None else f"{self._scheme}://{self._key}"

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: Location) -> bool:
        return str(self) < str(other)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return Location, (str(self) if self._path is None else os.fspath(self._path),)

    # --- asking the store ------------------------------------------------------------------------------

    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.fs_path)
        except OSError as exc:
            raise storage_error(self, "look up", exc) from None

    def exists(self) -> bool:
        if self._path is not None:
            return self._path.exists()
        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        if self._path is not None:
            return self._path.is_file()
        return bool(self._info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        """A folder; in a store, a prefix that holds objects."""
        if self._path is not None:
            return self._path.is_dir()
        return bool(self._info().type == pafs.FileType.Directory)

    def size(self) -> int:
        if self._path is not None:
            return self._path.stat().st_size
        info = self._info()
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(str(self))
        return int(info.size)

    def iterdir(self) -> Iterator[Location]:
        """The children (files and folders), in no particular order; nothing when there is no such folder."""
        if self._path is not None:
            if self._path.is_dir():
                yield from (Location(p) for p in self._path.iterdir())
            return
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._key, allow_not_found=True))
        except OSError as exc:
            raise storage_error(self, "list", exc) from None
        for info in infos:
            yield Location._remote(self._scheme, info.path.strip("/"))

    def glob(self, pattern: str) -> list[Location]:
        """Children whose name matches ``pattern`` (one level, ``fnmatch``), sorted by name."""
        if self._path is not None:
            return sorted(Location(p) for p in self._path.glob(pattern))
        return sorted(c for c in self.iterdir() if fnmatch.fnmatchcase(c.name, pattern))

    def dirs(self) -> list[Location]:
        """Child folders (store: prefixes holding objects), sorted by name."""
        if self._path is not None:
            return sorted(Location(p) for p in self._path.iterdir() if p.is_dir()) if self._path.is_dir() else []
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._key, allow_not_found=True))
        except OSError as exc:
            raise storage_error(self, "list", exc) from None
        return sorted(Location._remote(self._scheme, i.path.strip("/")) for i in infos
                      if i.type == pafs.FileType.Directory)

    # --- reading and removing ------------------------------------------------------------------------

    def read_bytes(self) -> bytes:
        """The whole file (``FileNotFoundError`` when there is none, locally or in a store)."""
        if self._path is not None:
            return self._path.read_bytes()
        with self.fs.open_input_stream(self._key) as f:
            return bytes(f.read())

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def open_input(self) -> Any:
        """A random-access ``pyarrow.NativeFile`` (store: each read is a ranged GET)."""
        return self.fs.open_input_file(self.fs_path)

    def mkdir(self) -> None:
        """Create the folder and its parents (a store has no folders: nothing to do)."""
        if self._path is not None:
            self._path.mkdir(parents=True, exist_ok=True)

    def unlink(self, missing_ok: bool = True) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=missing_ok)
            return
        try:
            self.fs.delete_file(self._key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Remove the folder and everything in it (store: every object under the prefix); none is fine."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            return
        try:
            self.fs.delete_dir_contents(self._key, missing_dir_ok=True)
            if self._info().type == pafs.FileType.Directory:
                self.fs.delete_dir(self._key)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(self, "remove", exc) from None


_LOCAL_FS = pafs.LocalFileSystem()

#: What every function taking a data location accepts.
Where = str | os.PathLike[str] | Location


def location(text: str) -> Location:
    """``argparse`` type of a data location: a path, ``s3://bucket/key`` or ``gs://bucket/key``."""
    try:
        return Location(text)
    except StorageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def local_dir(text: str) -> Path:
    """``argparse`` type of a location that must be a filesystem (a run folder, a report, raw inputs)."""
    try:
        loc = Location(text)
    except StorageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not loc.is_local:
        raise argparse.ArgumentTypeError(f"{text} is object storage; this must be a local or shared folder "
                                         f"(object storage holds records and shards: docs/cluster.md)")
    return loc.local_path()

"""Writing an output file whole or not at all.

A report, chart or export is often written over the one from last month's run. Opened with
``open(path, "w")``, the old file is emptied first; a crash, a full disk or a bad row half-way
then leaves a cut file where a good one was, and nothing says so when someone opens it later.
:func:`replaced` writes beside the target and renames over it only once everything is written
and flushed to disk, so the target is always either the old file or the complete new one.

A target that is not a regular file (``/dev/stdout``, ``/dev/full``, a named pipe) is written
directly: it cannot be renamed over, and a stream has no old content to keep.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["replaced", "write_bytes", "write_text"]


def _renamable(target: Path) -> bool:
    """True when ``target`` is a regular file or does not exist yet."""
    try:
        return target.is_file() or not target.exists()
    except OSError:
        return False


@contextmanager
def replaced(
    path: Path | str, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it is replaced only when the block ends without error.

    A symbolic link is followed: the file it names is replaced and the link stays. The new file
    gets the permissions a plain ``open`` would give it (the process's umask applies). On an
    error the temporary file is removed and the old file, if any, is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(os.path.realpath(path))
    if "b" in mode:
        encoding = None
    if not _renamable(target):
        try:
            with open(target, mode, encoding=encoding, newline=newline) as stream:
                yield stream
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise _naming(exc, path) from exc
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        if exc.filename not in (None, str(temporary)):
            raise
        raise _naming(exc, path) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _naming(error: OSError, path: Path | str) -> OSError:
    """``error`` naming the file the caller asked for, not the temporary one (or none): "No
    space left on device" alone does not say which of a run's files was cut."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def write_bytes(path: Path | str, data: bytes) -> None:
    """``Path.write_bytes``, whole or not at all (:func:`replaced`)."""
    with replaced(path, "wb") as stream:
        stream.write(data)


def write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> None:
    """``Path.write_text``, whole or not at all (:func:`replaced`)."""
    with replaced(path, "w", encoding=encoding) as stream:
        stream.write(text)

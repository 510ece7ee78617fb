"""Writing files safely: check the destination first, then write atomically.

Every writer (saving a graph, the exporters, the CLI) checks where it will write *before* it builds anything
(:func:`check_file`, :func:`check_folder`), so a bad path fails fast and
leaves nothing behind. Files are then written to a temporary file in the same
folder and moved into place with ``os.replace`` (:func:`write_atomic`,
:func:`write_files`): a reader never sees a half-written file, and an
interrupted export leaves the previous file, if any, untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

from .errors import FileFormatError


def check_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path`, after checking that its folder exists and is writable.

    Raises:
        FileFormatError: ``path`` is a folder, or its folder is missing or read-only.
    """
    target = Path(path)
    if target.is_dir():
        raise FileFormatError(f"cannot write the {what} to {target}: it is a folder; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileFormatError(f"cannot write the {what} to {target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileFormatError(f"cannot write the {what} to {target}: folder {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise FileFormatError(f"cannot write the {what} to {target}: the file exists and is read-only")
    return target


def check_folder(path: str | os.PathLike, what: str) -> Path:
    """A folder to write several files into: it exists and is writable, or its parent does
    (the folder is then created when the files are written).

    Raises:
        FileFormatError: ``path`` is a file, or neither it nor its parent is a writable folder.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileFormatError(f"cannot write the {what} into {folder}: it is a file; give a folder")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise FileFormatError(f"cannot write the {what} into {folder}: the folder is not writable")
        return folder
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        raise FileFormatError(f"cannot write the {what} into {folder}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FileFormatError(f"cannot write the {what} into {folder}: folder {parent} is not writable")
    return folder


def write_atomic(target: Path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to a temporary file beside ``target``, then ``os.replace`` it into place."""
    folder = target.parent if str(target.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise FileFormatError(f"cannot write the {what} to {target}: {exc}") from exc
        raise
    return target


def write_files(folder: Path, files: Mapping[str, bytes | str], what: str = "export") -> list[Path]:
    """Write several files into ``folder`` (created if missing), each atomically.

    All contents are produced before this is called, so a failure while
    building leaves no file; each file appears whole or not at all.
    """
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create the folder {folder} for the {what}: {exc}") from exc
    written = []
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        written.append(write_atomic(folder / name, data, what))
    return written


__all__ = ["check_file", "check_folder", "write_atomic", "write_files"]

"""Writing files so that a reader never sees half of one, with the permissions users expect."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back).

    Returns:
        The umask, e.g. `0o022`.

    Example:

    >>> 0 <= current_umask() <= 0o777
    True
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path, suffix=".part"):
    """A temporary path beside `path` to write to; on success it is renamed onto `path`.

    A reader (or a process that dies while writing) sees the old file or the new one, never
    half of either: the new file only takes the name once it is complete and on disk. It
    gets the permissions `open()` would give it under the user's umask (`0o644` under the
    usual `0o022`), not the owner-only mode of a temporary file, so a build step or a server
    running as another user can read what tfprune wrote. If the writing fails, the
    temporary file is removed; a process killed while writing leaves it behind (a hidden
    `.<name>.*.part` file), and the old file untouched.

    Args:
        path: the file to replace; its directory must exist.
        suffix: the temporary file's suffix, for writers that insist on one (Keras wants
            `.keras`). Defaults to `".part"`.

    Yields:
        The temporary `pathlib.Path` (it exists, empty).

    Raises:
        OSError: if the directory is missing or not writable.

    Example:

    >>> import tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with replacing(target) as temporary:
    ...     _ = temporary.write_text("pruned\\n")
    >>> target.read_text()
    'pruned\\n'
    """
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield pathlib.Path(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path, data) -> pathlib.Path:
    """Write `data` to `path` through a temporary file renamed into place (see `replacing`).

    Args:
        path: the file to write; its directory must exist.
        data: `bytes`, or a `str` (written as UTF-8).

    Returns:
        The path written.

    Raises:
        OSError: if the directory is missing or not writable (nothing is left behind).

    Example:

    >>> import tempfile
    >>> path = write_atomically(pathlib.Path(tempfile.mkdtemp()) / "notes.txt", "pruned\\n")
    >>> path.read_text(), oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    ('pruned\\n', True)
    """
    path = pathlib.Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    with replacing(path) as temporary:
        temporary.write_bytes(payload)
    return path

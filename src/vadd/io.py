"""Safe, atomic files: JSON, JSONL, ``.npy`` arrays, figures; output and input paths checked in one line.

Nothing here unpickles. Every write goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the target, so a kill during a save leaves either the old file or the new one, never a
broken one. Files get the mode the umask allows (0644 under the usual 022), not the 0600 of a bare temporary
file. Saved models (safetensors weights with a JSON config) are :mod:`vadd.hub`'s.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .budget import check_alloc
from .errors import DataError, MissingFile, RunError

# filesystem failures a user fixes (space, permissions, a path that is a file): RunError, not a traceback
USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                  errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


def file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_output(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail before any work if ``path`` cannot be written: a file output that is a directory, a folder
    output that is a file, or a parent that is a file or not writable."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise RunError(f"{path}: is {'a file' if folder else 'a directory'}; give a {'folder' if folder else 'file'} path")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{path}: cannot write there ({parent} is not a writable folder)")
    return path


def input_path(path: str | os.PathLike, what: str = "data file", folder_ok: bool = False) -> Path:
    """An input that exists and is a regular file (or, with ``folder_ok``, a folder): a FIFO or a device
    would hang or stream forever, a folder given for a file fails later with a stranger message."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"no such {what}: {path}")
    if not (path.is_file() or (folder_ok and path.is_dir())):
        raise DataError(f"{path}: not a regular file{' or folder' if folder_ok else ''}; give the {what} itself")
    return path


def check_npy_header(path: str | os.PathLike) -> None:
    """Read a ``.npy`` header only: an array its file cannot hold (truncated or forged) or that would not fit
    in memory is refused before numpy allocates it."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            return
        shape, _, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject:
        return  # np.load refuses it without unpickling
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = os.path.getsize(path) - offset
    if nbytes > held:
        raise DataError(f"{path}: the header describes an array of shape {tuple(shape)} ({nbytes:,} bytes) but "
                        f"the file holds {held:,}: truncated or not written by numpy")
    check_alloc(3.0 * nbytes, f"{path}: an array of shape {tuple(shape)}", "the data (split the file)")


TEMP_TAG = "vadd-tmp-"  # in the names of our temporary files, so a clean-up never touches a user's own


def own_temp_files(folder: Path) -> list[Path]:
    """The temporary files :func:`atomic_write_bytes` left in ``folder`` (a write killed midway): regular
    files named by it, nothing else."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in folder.glob(f".*.{TEMP_TAG}*.tmp") if p.is_file() and not p.is_symlink()]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    import io as _io
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_TAG}", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in USER_OS_ERRORS:
            raise RunError(f"{path}: cannot write ({e.strerror})") from None
        raise


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def append_jsonl(path, row: dict) -> None:
    """Append ``row`` as one JSON line to ``path`` (its folder created): the probe scripts' log of runs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row, default=_jsonable) + "\n")


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def write_npy(path, arr: np.ndarray) -> None:
    import io as _io
    buf = _io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())

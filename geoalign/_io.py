"""Atomic file writes: write to a temporary file in the same folder, then rename.

An interrupted run therefore leaves either the old file or the new one, never a
truncated one.  Every module that saves results (checkpoints, sweep cells,
figures, manifests) goes through these helpers.

* Written files get the permissions of an ordinary ``open(path, "w")``:
  ``0o666`` minus the process umask (``0644`` under umask ``022``), not the
  ``0600`` of :func:`tempfile.mkstemp`.
* Temporary files are named ``.<name>.tmp-<pid>-<random>``.  The first write
  into a folder in a process removes the temporary files there whose process
  no longer runs (left by a run killed with ``kill -9``); those of live
  processes (a concurrent run) are kept.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "current_umask", "remove_stale_temps", "load_npz", "load_npy", "read_config_file"]

_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[^/]*$")
# temporary names of earlier versions (no pid): removed once they are clearly abandoned
_LEGACY_TMP_RE = re.compile(r"^\..+\.tmp-[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")
LEGACY_TMP_AGE_S = 3600.0
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read by setting and restoring (briefly process-wide)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` files in ``folder`` whose process is gone; return them.

    Temporary files of running processes (this one included) are kept.  Names
    without a pid (``.<name>.tmp-<8 characters>[.ext]``, written by earlier
    versions) are removed once older than :data:`LEGACY_TMP_AGE_S` seconds.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None:
            if not _LEGACY_TMP_RE.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime < LEGACY_TMP_AGE_S:
                    continue
        elif int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve())
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_temps(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    ``suffix`` (default: ``path``'s own) keeps writers that look at the file
    extension (matplotlib, numpy, torch) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name to write to")
    _clean_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-",
                               suffix=suffix if suffix is not None else path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file what open() would have: 0666 minus the umask
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, default: Callable | None = str) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n")


def load_npz(path: str | os.PathLike, keys: dict[str, str], optional: tuple = (),
             what: str = "file", missing_error: type = KeyError) -> dict[str, Any]:
    """Read the arrays ``keys`` (role -> array name) of an ``.npz`` archive, numeric data only.

    Roles in ``optional`` may be absent.  Every failure is a ``ValueError`` (or
    ``FileNotFoundError``/``KeyError``) naming the file and what to do -- never
    NumPy's advice to pass ``allow_pickle``, which would run code from the file.
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" if not path.exists()
                                else f"{what} {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path} is not an .npz archive (not a zip file; truncated, or "
                         "another format); write it with numpy.savez")
    out: dict[str, Any] = {}
    missing: list = []
    try:
        with np.load(path, allow_pickle=False) as z:
            files = sorted(z.files)
            missing = [(r, v) for r, v in keys.items() if r not in optional and v not in z.files]
            if not missing:
                for role, name in keys.items():
                    if name in z.files:
                        out[role] = z[name]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{what} {path} holds object (pickled) arrays; geoalign reads numeric "
                             "arrays only -- re-save them with a numeric dtype") from None
        raise ValueError(f"{what} {path} is corrupt ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ValueError(f"{what} {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                         "write it again") from None
    if missing:
        role, name = missing[0]
        raise missing_error(f"{what} {path} lacks array(s) {[v for _, v in missing]}: "
                            f"no {role} key {name!r}; available: {files}")
    return out


def load_npy(path: str | os.PathLike, mmap: bool = False, what: str = "file"):
    """Read one numeric ``.npy`` array (memory-mapped with ``mmap``), with errors naming the file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" if not path.exists()
                                else f"{what} {path} is not a file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{what} {path} holds an object (pickled) array; geoalign reads "
                             "numeric arrays only -- re-save it with a numeric dtype") from None
        raise ValueError(f"{what} {path} is not a readable .npy array ({exc}); write it with "
                         "numpy.save") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{what} {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                         "write it again") from None


def read_config_file(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a ``.json`` or ``.toml`` file; a ``ValueError`` names the file, the place and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" if not path.exists()
                                else f"{what} {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "is it the right file?") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{what} {path} is not valid TOML ({exc}); fix or remove it") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}); fix or remove it") from None

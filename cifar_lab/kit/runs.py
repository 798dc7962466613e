"""Run folders: every run claims a folder of its own, atomically, and a finished result is never overwritten.

A folder holds one run. `claim` takes it for this process (an exclusive lock file, then run.json saying
what runs there); it refuses a folder that holds a finished run, another process's live run, or, unless
resuming, an unfinished one; resuming needs the same parameters. `finish` records how the run ended.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..files import check_output_dir
from ..files import load_json, save_json

RECORD = "run.json"  # what runs (ran) here: parameters, status, process
LOCK = ".lock"  # held by the process running here


class RunFolderError(ValueError):
    """The folder cannot be used for this run; the message says why and what to do."""


def new_folder(parent: str | Path, stem: str) -> Path:
    """A new, empty folder PARENT/STEM_DATE-TIME (then -2, -3... if taken), created atomically."""
    base = f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
    Path(parent).mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = Path(parent) / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()  # fails if another run took this name first
            return path
        except FileExistsError:
            continue
    raise RunFolderError(f"no free folder name under {parent}")


def read(folder: str | Path) -> dict | None:
    """The run record of a folder, or None if it holds none."""
    path = Path(folder) / RECORD
    return load_json(path) if path.exists() else None


def claim(folder: str | Path, params: dict[str, Any], kind: str, resume: bool = False, hold: bool = True) -> Path:
    """Take `folder` for a run of `kind` ('train', 'notebook') with `params`; keep the lock while `hold`."""
    folder = check_output_dir(folder)
    _lock(folder)
    try:
        record = read(folder)
        if record is not None and record.get("status") == "running" and "pid" in record and _alive(record):
            raise RunFolderError(f"{folder} is in use by another run (process {record['pid']} on "
                                 f"{record.get('host')}); wait for it, or choose another folder")
        if record is None and resume:
            raise RunFolderError(f"nothing to resume in {folder}: it holds no run; start one without --resume")
        if record is None:
            left = [n for n in ("metrics.json", "checkpoints") if (folder / n).exists()]
            if left:
                raise RunFolderError(f"{folder} already holds results ({', '.join(left)}); choose another folder, "
                                     f"or delete it to start again")
        elif record.get("status") != "finished" and resume and not any(
                (folder / n).exists() for n in ("checkpoints/last.pt", "results.json")):  # a training's, a bench's
            raise RunFolderError(f"nothing to resume in {folder}: it holds no checkpoints/last.pt (the run ended "
                                 f"before its first epoch, or the file was deleted); start without --resume "
                                 f"and with another folder")
        elif not resume and record.get("status") != "running" and not holds_results(folder, record):
            pass  # a run that ended before any result (e.g. a wrong data_dir): its folder is free again
        elif record.get("status") == "finished" or record.get("kind") != kind or not resume:
            raise RunFolderError(_taken(folder, record))
        else:
            differ = changed(record.get("params", {}), params)
            if differ:
                raise RunFolderError(f"{folder} holds a run with other parameters; resume it with the same ones "
                                     f"({differ}), or choose another folder")
        save_json({"kind": kind, "status": "running", "params": params, "pid": os.getpid(),
                   "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                   **({"resumed": True} if resume else {})}, folder / RECORD)
    except BaseException:
        _unlock(folder)
        raise
    if not hold:
        _unlock(folder)
    return folder


def holds_results(folder: Path, record: dict | None = None) -> bool:
    """True if the folder holds anything a run produced: a finished record, metrics, figures or checkpoints."""
    record = read(folder) if record is None else record
    made = [p for p in folder.iterdir() if p.name not in (RECORD, LOCK) and not p.name.startswith(".write_test.")]
    return (record or {}).get("status") == "finished" or any(p.is_file() or any(p.iterdir()) for p in made)


@contextlib.contextmanager
def held(folder: Path):
    """`folder` locked for this process while the block runs; a live process's lock there is a RunFolderError."""
    _lock(folder)
    try:
        yield folder
    finally:
        _unlock(folder)


def finish(folder: str | Path, status: str, **extra: Any) -> None:
    """Record how the run ended ('finished', 'interrupted', 'failed: ...') and let the folder go."""
    folder = Path(folder)
    record = read(folder) or {}
    save_json({**record, "status": status, "ended": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}, folder / RECORD)
    _unlock(folder)


def changed(saved: dict, params: dict) -> str:
    """The parameters that differ, as 'name=saved (not new)', or '' when none does."""
    norm = json.loads(json.dumps(params, default=str))  # as the record reads back
    names = sorted(set(saved) | set(norm))
    return ", ".join(f"{n}={saved.get(n)!r} (not {norm.get(n)!r})" for n in names if saved.get(n) != norm.get(n))


def _taken(folder: Path, record: dict) -> str:
    status = record.get("status", "unknown")
    if status == "finished":
        return (f"{folder} already holds a finished run (started {record.get('started')}); its results are kept: "
                f"choose another folder, or delete it to run again")
    if record.get("kind") == "bench" and (folder / "results.json").exists():
        return (f"{folder} holds an unfinished comparison ({status}); continue it with --resume (same command), "
                f"or choose another folder")
    if record.get("kind") == "train" and (folder / "checkpoints" / "last.pt").exists():
        return (f"{folder} holds an unfinished training run ({status}); continue it with --resume (same "
                f"parameters), or delete the folder to start again")
    return (f"{folder} already holds the results of an earlier run ({record.get('kind')}, {status}, started "
            f"{record.get('started')}); choose another output folder, or delete it to run again")


def in_use(folder: str | Path) -> bool:
    """Whether a live process holds `folder`: its lock, or its record of a running run, names one that still runs."""
    owner, record = _read_lock(Path(folder) / LOCK), read(folder) if (Path(folder) / RECORD).exists() else None
    return (owner is not None and _alive(owner)) or (record is not None and record.get("status") == "running"
                                                    and "pid" in record and _alive(record))


def _lock(folder: Path) -> None:
    """Create FOLDER/.lock exclusively; a lock left by a dead process (or this one) is taken over."""
    with _one_claim_at_a_time(folder):
        _create_lock(folder)


@contextlib.contextmanager
def _one_claim_at_a_time(folder: Path):
    """Claims of one folder run one after another (an OS lock on the folder, freed if a process dies)."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # Windows: the exclusive create alone
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # without it, two runs could both see a lock half-written or stale
        yield
    finally:
        os.close(fd)


def _create_lock(folder: Path) -> None:
    path = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_lock(path)
            if owner is not None and _alive(owner):
                raise RunFolderError(f"{folder} is in use by another run (process {owner['pid']} on "
                                     f"{owner['host']}); wait for it, or choose another folder") from None
            path.unlink(missing_ok=True)  # its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
        return
    raise RunFolderError(f"{folder} is being claimed by another run at this moment; try again")


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # half-written by a process that died


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell, so assume it runs
    if owner.get("pid") == os.getpid():
        return False  # an earlier run of this same process (a notebook kernel) that ended
    try:
        pid = int(owner["pid"])
    except (ValueError, KeyError, TypeError):
        return True
    if os.name == "nt":
        return _alive_on_windows(pid)
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists (POSIX)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _alive_on_windows(pid: int) -> bool:
    # os.kill(pid, 0) would send Ctrl-C there (signal 0 is CTRL_C_EVENT) or terminate the process: ask instead
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE  # a pointer-sized handle, not a 32-bit int
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE: enough to wait on it
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists, someone else's
    try:
        return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT: it has not ended
    finally:
        kernel32.CloseHandle(handle)


def _unlock(folder: Path) -> None:
    path = folder / LOCK
    owner = _read_lock(path)
    if owner is None or owner.get("pid") == os.getpid():
        path.unlink(missing_ok=True)

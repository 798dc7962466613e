"""Files: results written so that none is ever lost (atomic writes), the record of a run's setting, and
downloads that give up in seconds when offline."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    A crash or kill mid-write leaves the previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _ctrl_c_after():  # Ctrl-C mid-write would break torch.save in C++ ("enforce fail"): it waits
        return _atomic_write(path, write, mode)


@contextlib.contextmanager
def _ctrl_c_after():
    """Hold back Ctrl-C (SIGINT) until the block ends, then raise it; main thread only (elsewhere: as is)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    previous = signal.SIG_DFL if previous is None else previous  # None: a handler set outside Python
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
        elif caught and previous is not signal.SIG_IGN:
            signal.raise_signal(signal.SIGINT)  # the default action, now that the file is whole


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(e):
            raise DiskFullError(f"no space left on the disk to write {path}; the previous version of the file "
                                f"is intact: free some space and run again (a training run: resume it)") from e
        raise
    return path


class DiskFullError(OSError):
    """The disk filled up while a result was written."""


def _disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an error it came from, is ENOSPC (torch.save reports it as a RuntimeError)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def socket_timeout(seconds: float):
    """Network calls inside give up after `seconds` instead of hanging (offline machines)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(obj: Any, path: str | Path) -> Path:
    """Write `obj` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_jsonable)
    return atomic_write(path, lambda f: f.write(text), mode="w")


def load_json(path: str | Path) -> Any:
    """Read a JSON file, saying which file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); was it written by an interrupted run?") from e


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # tensors and numpy arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), with ", native bf16" when it has AVX-512 BF16."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return (names[0] if names else platform.machine()) + (", native bf16" if "avx512_bf16" in text else ", no native bf16")


def environment_info() -> dict:
    """Library versions and machine, recorded next to every run's metrics."""
    import numpy
    import torch
    import torchvision

    from . import __version__
    return {"cifar_lab": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": str(numpy.__version__),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_name(),
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def check_output_dir(path: Any, name: str = "output_dir") -> Path:
    """Create `path` if needed and check that files can be written in it."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"{name} must be a folder path, got {path!r} ({type(path).__name__})")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)  # a name of its own: runs may start at once
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{name} {path} cannot be written ({e.strerror or e}); choose another folder") from e
    return path

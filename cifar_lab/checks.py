"""Early, plain-worded checks of user parameters (papermill passes `-p` values as str, int, float or bool)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def _type_name(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int >= minimum, or a ValueError saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {_type_name(value)}")
    return value


def check_float(name: str, value: Any, minimum: float = 0.0, maximum: float | None = None,
                strict: bool = False) -> float:
    """`value` as a float in [minimum, maximum] (or (minimum, ...] if strict), or a ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (value > minimum if strict else value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        low = f"> {minimum}" if strict else f">= {minimum}"
        high = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be a number {low}{high}, got {_type_name(value)}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """`value` lower-cased if it is one of `choices`, or a ValueError listing them."""
    choices = list(choices)
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    return value.lower()


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a bool (papermill passes -p flip False as a bool), or a ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {_type_name(value)}")
    return value


def check_output_dir(path: Any, name: str = "output_dir") -> Path:
    """Create `path` if needed and check that files can be written in it."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"{name} must be a folder path, got {_type_name(path)}")
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


def check_data_dir(path: Any) -> Path | None:
    """None (the default folder) or a path that is not a file."""
    if path is None or path == "":
        return None
    if not isinstance(path, (str, Path)):
        raise ValueError(f"data_dir must be a folder path or None, got {_type_name(path)}")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"data_dir {path} is a file; give the folder that holds cifar-10-batches-py/")
    return path


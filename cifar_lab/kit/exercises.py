"""Checks for the notebooks' exercises: a student's answer against the run's own result.

An exercise cell holds the student's answer and `print(run.check(1, answer_1))`; the expected value and the
hint live in the answer key (kit/answers.py), which calls `check` below. A prediction is recorded
before the run that reveals it (`predict`), and shown beside the result after it (`reveal`). Worked solutions live in
the teacher's copies (teacher/source/, nbgrader's format: kit/release.py), out of the student's way; the tests
run every teacher's copy and require every check to say "right".
"""
from __future__ import annotations

import math
from typing import Any

RIGHT, UNANSWERED = "right", "not answered yet"
_PREDICTIONS: dict[str, Any] = {}  # this kernel's predictions, by question
_REVEALED: set[str] = set()  # questions whose answer a run has shown


def predict(question: str, guess: Any) -> str:
    """Record a guess before the run that answers `question`; one made after the reveal is not recorded."""
    if guess is None:
        return "no prediction yet: set it above, then run this cell before the run that answers it"
    if question in _REVEALED:
        return f"too late for {question!r}: this kernel has already shown the answer (restart to predict again)"
    _PREDICTIONS[question] = guess
    return f"prediction recorded: {question} = {guess!r}"


def reveal(question: str, actual: Any, shown: str = "{}") -> str:
    """The recorded guess beside what the run gave (`shown` formats both, e.g. "{:.1%}")."""
    _REVEALED.add(question)
    if question not in _PREDICTIONS:
        return f"{question}: {_show(shown, actual)} (no prediction was recorded before the run)"
    guess = _PREDICTIONS[question]
    return f"{question}: you predicted {_show(shown, guess)}, the run gave {_show(shown, actual)}"


def _show(form: str, value: Any) -> str:
    try:
        return form.format(_plain(value))
    except (TypeError, ValueError):  # a guess of another kind than the format expects
        return repr(value)


def check(answer: Any, expected: Any, hint: str, tolerance: float = 0.0) -> str:
    """'right', 'not answered yet', or 'not quite: HINT' for a student's answer (numbers within `tolerance`)."""
    if answer is None:
        return UNANSWERED
    kind = _kind_mismatch(_plain(answer), _plain(expected))
    if kind:
        return f"not quite: {kind}"
    return RIGHT if _same(answer, expected, tolerance) else f"not quite: {hint}"


def _kind_mismatch(answer: Any, expected: Any) -> str:
    """A sentence when the answer is of another kind than asked (text for a number, an array for one value)."""
    number = (int, float)
    if hasattr(answer, "shape") and getattr(answer, "ndim", 0) > 0 and not hasattr(expected, "shape"):
        return f"give one value, not an array of shape {tuple(answer.shape)}"
    if isinstance(expected, number) and not isinstance(expected, bool) and isinstance(answer, str):
        return f"give a number, not the text {answer!r} (drop the quotes)"
    if isinstance(expected, str) and isinstance(answer, number) and not isinstance(answer, bool):
        return f"give the answer as text in quotes, not the number {answer!r}"
    return ""


def _plain(x: Any) -> Any:
    """A 0-d numpy or torch value (np.bool_, a tensor's item) as the Python value it holds."""
    return x.item() if getattr(x, "ndim", None) == 0 and hasattr(x, "item") else x


def _same(answer: Any, expected: Any, tolerance: float) -> bool:
    answer, expected = _plain(answer), _plain(expected)
    if isinstance(expected, bool) or isinstance(answer, bool):
        return isinstance(answer, bool) and isinstance(expected, bool) and answer == expected
    if isinstance(expected, (int, float)) and isinstance(answer, (int, float)):
        return math.isclose(answer, expected, rel_tol=0.0, abs_tol=tolerance)
    if isinstance(expected, str) and isinstance(answer, str):
        return answer.strip().lower() == expected.strip().lower()
    if isinstance(expected, (set, frozenset)) and isinstance(answer, (set, frozenset, list, tuple)):
        return {str(a).strip().lower() for a in answer} == {str(e).strip().lower() for e in expected}
    return answer == expected

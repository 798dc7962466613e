"""The repository the notebooks' Colab badge and install cell point to, set in one place.

    cifar-lab colab                     # writes pyproject's URL into every notebook
    cifar-lab colab github.com/ORG/REPO  # sets a new URL in pyproject.toml, then writes it

The one place is `[project.urls] Repository` in pyproject.toml; a test checks the notebooks agree with it.
"""
from __future__ import annotations

import json
import re
import sys

from .notebooks import NOTEBOOKS, ROOT

PYPROJECT = ROOT / "pyproject.toml"
URL_LINE = re.compile(r'^Repository = "https://(github\.com/[\w.-]+/[\w.-]+)"$', re.M)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/notebooks/")
INSTALL = re.compile(r'git\+https://github\.com/[\w.-]+/[\w.-]+"')


def repository() -> str:
    """'github.com/ORG/REPO' as pyproject.toml states it."""
    found = URL_LINE.search(PYPROJECT.read_text())
    if not found:
        raise ValueError(f'{PYPROJECT} has no line Repository = "https://github.com/ORG/REPO" under [project.urls]')
    return found.group(1)


def notebook_sources(repo: str) -> dict[str, str]:
    """The badge link and install command every notebook should hold for `repo`."""
    path = repo.removeprefix("github.com/")
    return {"badge": f"https://colab.research.google.com/github/{path}/blob/main/notebooks/",
            "install": f'git+https://{repo}"'}


def write(repo: str | None = None) -> list[str]:
    """Put `repo` (default: pyproject's) into pyproject.toml and every notebook; returns the notebooks changed."""
    if repo is not None:
        if not re.fullmatch(r"github\.com/[\w.-]+/[\w.-]+", repo) or repo.endswith(".git"):
            hint = f" (without .git: {repo.removesuffix('.git')})" if repo.endswith(".git") else ""
            raise ValueError(f"give the repository as github.com/ORG/REPO{hint}, not {repo!r}")
        PYPROJECT.write_text(URL_LINE.sub(f'Repository = "https://{repo}"', PYPROJECT.read_text()))
    want = notebook_sources(repository())
    changed = []
    teachers = sorted((ROOT / "teacher" / "source").glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))  # nbgrader's sources
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + teachers:
        nb = json.loads(path.read_text())
        before = json.dumps(nb)
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            cell["source"] = INSTALL.sub(want["install"], BADGE.sub(want["badge"], text)).splitlines(keepends=True)
        if json.dumps(nb) != before:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(str(path.relative_to(ROOT)))
    return changed


def sources(path) -> str:
    """All cell sources of a notebook, as one text."""
    return "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])


def main(argv: list[str] | None = None) -> int:
    """`cifar-lab colab [OWNER/REPO]`: write the repository into pyproject and every notebook's badge."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        names = write(argv[0] if argv else None)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"repository {repository()}: " + (f"updated {', '.join(names)}" if names else "notebooks already agree"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Another release of Workhorse beside this checkout: a git commit exported into a directory of
its own, with an interpreter that can run it.

The export is `git archive` (the commit's files, nothing else). It runs on this checkout's
interpreter when that one already has every dependency the release declares (the common case
between neighbouring releases: `app` is then imported from the export, which is the working
directory and comes first on the path); otherwise a virtual environment is made for it in the
export, from the package registry (minutes, said on stderr).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from app.config import PROJECT_ROOT


class ReleaseUnavailable(RuntimeError):
    """The ref names no commit here (a shallow clone, a typo), or its files cannot be exported."""


@dataclass(frozen=True)
class Release:
    ref: str
    commit: str
    subject: str
    root: Path
    python: str

    @property
    def label(self) -> str:
        named = "" if self.commit.startswith(self.ref) else f"{self.ref} = "
        return f"{named}{self.commit[:10]} \"{self.subject[:60]}\""


def _git(*args: str, repo: Path = PROJECT_ROOT) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseUnavailable(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(ref: str, repo: Path = PROJECT_ROOT) -> str:
    """The commit `ref` names (HEAD~1, a tag, a hash)."""
    return _git("rev-parse", "--verify", f"{ref}^{{commit}}", repo=repo)


def before_newest_migration(repo: Path = PROJECT_ROOT) -> str:
    """The parent of the commit that added the newest migration: the last release whose schema
    is older than this one's, so that a deploy drill crosses a schema change."""
    newest = sorted((repo / "app" / "db" / "migrations").glob("*.sql"))[-1]
    added = _git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(newest.relative_to(repo)), repo=repo)
    if not added:
        raise ReleaseUnavailable(f"no commit here adds {newest.name} (a shallow clone?)")
    return resolve(f"{added}~1", repo)


def missing_requirements(root: Path) -> list[str]:
    """The release's declared dependencies that this interpreter does not satisfy."""
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"].get("dependencies", [])
    missing = []
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (here {installed})")
    return missing


@contextmanager
def checked_out(ref: str, repo: Path = PROJECT_ROOT) -> Iterator[Release]:
    """The release at `ref` in a temporary directory, removed afterwards."""
    commit = resolve(ref, repo)
    root = Path(tempfile.mkdtemp(prefix=f"wh-release-{commit[:8]}-"))
    try:
        with subprocess.Popen(["git", "-C", str(repo), "archive", commit], stdout=subprocess.PIPE) as archive:
            untar = subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, capture_output=True)
        if archive.returncode != 0 or untar.returncode != 0:
            raise ReleaseUnavailable(f"could not export {commit[:10]}: {untar.stderr.decode(errors='replace')}")
        subject = _git("log", "-1", "--format=%s", commit, repo=repo)
        yield Release(ref, commit, subject, root, _interpreter(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _interpreter(root: Path) -> str:
    missing = missing_requirements(root)
    if not missing:
        return sys.executable
    print(f"drill: the release needs {', '.join(missing)}; installing it into {root / '.venv'}",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    python = str(root / ".venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(root)], check=True)
    return python

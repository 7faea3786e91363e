"""What ``pip install`` gives a user: the wheel and sdist built from this checkout.

The distributions are built as a release would build them (``python -m build``, isolated),
checked with ``twine check --strict``, and the wheel is installed into a fresh virtualenv
outside the repository, where a new Django project using gqlsync must start. These tests
talk to the package index (build requirements, the wheel's dependencies): without it they
skip, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CI

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path = ROOT, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        output = done.stdout[-3000:] + done.stderr[-3000:]
        offline = "Could not find a version" in output or "NewConnectionError" in output
        if offline and not CI:
            pytest.skip("the package index is not reachable")
        raise AssertionError(f"{args} failed ({done.returncode}):\n{output}")
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # a copy of the checkout, so that building leaves no egg-info or build/ in the tree
    source = tmp_path_factory.mktemp("source") / "gqlsync"
    files = _run("git", "ls-files", "--cached", "--others", "--exclude-standard").split()
    for name in files:
        path = ROOT / name
        if path.is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(path.read_bytes())
    _run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("gqlsync-*.whl")
    return wheel


def test_twine_accepts_both_distributions(dist: Path) -> None:
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    _run(sys.executable, "-m", "twine", "check", "--strict", *files)


def test_the_wheel_holds_only_the_gqlsync_package(dist: Path) -> None:
    names = zipfile.ZipFile(_wheel(dist)).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"gqlsync"}
    # what the package needs at run time travels with it
    for needed in ("gqlsync/py.typed", "gqlsync/graphiql/index.html",
                   "gqlsync/graphiql/static/graphiql.js"):
        assert needed in names, needed
    assert not [n for n in names if "/build/" in n or n.endswith((".jsx", ".sh"))]
    metadata = zipfile.ZipFile(_wheel(dist)).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: django<6.2,>=5.2" in metadata


def test_the_sdist_holds_the_library_not_the_repository(dist: Path) -> None:
    (sdist,) = dist.glob("gqlsync-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE", "gqlsync/__init__.py"} <= names
    for absent in ("schema_examples/", "tests/", "bench/", "docs/"):
        assert not [n for n in names if n.startswith(absent)], absent


def test_the_wheel_installs_into_a_fresh_project(dist: Path, tmp_path: Path) -> None:
    """A new project outside the repository: install the wheel with its dependencies, then
    Django's system checks and the ASGI application must come up."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", f"{_wheel(dist)}[server]")
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text(textwrap.dedent("""
        SECRET_KEY = "x"
        INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                          "strawberry_django", "gqlsync"]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": ":memory:"}}
        USE_TZ = True
    """))
    (project / "app.py").write_text(textwrap.dedent("""
        import django
        django.setup()
        import strawberry
        import gqlsync
        import gqlsync.asgi

        @strawberry.type
        class Query:
            hello: str = "world"

        schema = strawberry.Schema(query=Query)
        application = gqlsync.asgi.application(schema)
        print(gqlsync.__version__, gqlsync.__file__)
    """))
    env_run = [python, "-c",
               "import os, runpy; os.environ['DJANGO_SETTINGS_MODULE'] = 'settings';"
               " runpy.run_path('app.py')"]
    out = _run(*env_run, cwd=project)
    version, location = out.split()
    assert version == "0.1.0"
    assert str(venv) in location  # the installed copy, not this checkout
    _run(python, "-m", "django", "check", "--settings=settings", "--pythonpath=.",
         cwd=project)
    missing = subprocess.run([python, "-c", "import schema_examples"], cwd=project,
                             capture_output=True, text=True)
    assert missing.returncode != 0, "the demo project must not be installed"

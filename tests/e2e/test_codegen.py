"""The typed-client recipe (docs/guides/typed-clients.md) works, and its types are real.

``tests/e2e/codegen`` is the recipe as a small TypeScript project: GraphQL Code
Generator's client preset reads the demo's SDL (``manage.py gqlsync schema``) and the
documents written with ``graphql()`` in ``src/*.ts``, and generates ``src/gql/``; strict
``tsc`` then checks the client against those types. The client's documents are the
shared contract's chat operations, verbatim.

What a user relies on, and how it is shown here:

- the SDL exports, codegen types every operation, and the client typechecks;
- the types are real, not ``any``: the project holds ``// @ts-expect-error`` lines (a
  field the schema lacks in ``client.ts``; a missing variable and more in ``checks.ts``),
  and ``tsc`` fails when one stops being an error: its target made valid, or the
  generated types made ``any``;
- a document that asks for a field the schema lacks fails codegen, not later at runtime;
- compiled, the client signs in (typed mutation), lists its rooms (typed query),
  subscribes (typed subscription), sends (typed mutation) and receives its own message
  from a live demo server;
- the guide's code blocks are these files, verbatim.

Each test works in a copy of the project with its ``node_modules`` linked in, so the
tree is never written to and sabotage stays in the copy. ``node_modules`` comes from
``npm ci`` in ``tests/e2e/codegen`` (scripts/test.sh runs it); without it, or without
node and npm, the tests skip, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI
from tests.e2e.conftest import ROOT, Server, contract_operation

CODEGEN_DIR = Path(__file__).resolve().parent / "codegen"
GUIDE = ROOT / "docs" / "guides" / "typed-clients.md"
#: the demo's schema, as ``manage.py gqlsync schema --schema`` takes it
SCHEMA = "schema_examples.schema:schema"
#: the project's own files: what a copy is made of (not node_modules, nor what it makes)
PROJECT_FILES = ("package.json", "package-lock.json", "codegen.ts", "tsconfig.json",
                 "src/client.ts", "src/main.ts", "src/checks.ts", "src/apollo.ts",
                 "src/urql.ts")
#: the operations of src/client.ts and the type codegen names each one's result
OPERATIONS = {"Login": "LoginMutation", "Rooms": "RoomsQuery",
              "SendMessage": "SendMessageMutation", "RoomMessages": "RoomMessagesSubscription"}

e2e = pytest.mark.e2e


def codegen_available() -> None:
    """Skip (fail under CI) unless node, npm and the project's node_modules are there."""
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if not missing and (CODEGEN_DIR / "node_modules").is_dir():
        return
    message = (f"{' and '.join(missing)} not found" if missing else
               "tests/e2e/codegen/node_modules is missing (run: cd tests/e2e/codegen && "
               "npm ci)")
    if CI:
        pytest.fail(message + " (CI=true: a missing tool is a failure)")
    pytest.skip(message)


def run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def export_sdl(out: Path) -> None:
    """The demo's SDL into ``out``: ``gqlsync schema`` where the command exists, else
    strawberry-django's ``export_schema`` (the same printer, ``strawberry export-schema``'s)."""
    if (ROOT / "gqlsync" / "management" / "commands" / "gqlsync.py").is_file():
        command = ["gqlsync", "schema", "--schema", SCHEMA, "--out", str(out)]
    else:
        command = ["export_schema", SCHEMA, "--path", str(out)]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "schema_examples.settings"}
    result = subprocess.run([sys.executable, "-m", "django", *command], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "type Subscription" in out.read_text(encoding="utf-8")


def fresh_copy(where: Path) -> Path:
    """tests/e2e/codegen's own files in ``where``, with the real node_modules linked in."""
    codegen_available()
    for name in PROJECT_FILES:
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CODEGEN_DIR / name, where / name)
    (where / "node_modules").symlink_to(CODEGEN_DIR / "node_modules", target_is_directory=True)
    return where


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with the demo's SDL exported into it and codegen run, once
    for the module's tests (which change copies of it, never it)."""
    project = fresh_copy(tmp_path_factory.mktemp("generated") / "codegen")
    export_sdl(project / "schema.graphql")
    result = codegen(project)
    assert result.returncode == 0, output(result)
    return project


@pytest.fixture
def project(tmp_path: Path, generated: Path) -> Path:
    """A copy of the generated project of this test's own, to change at will."""
    copy = tmp_path / "codegen"
    shutil.copytree(generated, copy, symlinks=True)
    return copy


def codegen(project: Path) -> subprocess.CompletedProcess[str]:
    return run(["npx", "--no", "--", "graphql-codegen", "--config", "codegen.ts"], project)


def tsc(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run(["npx", "--no", "--", "tsc", *options, "-p", "."], project)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


# ------------------------------------------------------------------ codegen and tsc


@e2e
def test_codegen_types_every_operation_and_the_client_typechecks(generated: Path) -> None:
    types = (generated / "src" / "gql" / "graphql.ts").read_text(encoding="utf-8")
    for operation, result_type in OPERATIONS.items():
        assert f"export type {result_type} = " in types, operation
        assert f"export type {result_type}Variables = " in types, operation
    # the subscription's payload: the event, its op an enum of the three changes
    payload = re.search(r"export type RoomMessagesSubscription = (.*);", types)
    assert payload is not None
    assert "messageChanged: { op: ChangeOp, id: string, cursor: string, node: {" \
        in payload[1], payload[1]
    assert re.search(r"export type ChangeOp =\s*\| 'CREATED'\s*\| 'DELETED'\s*\| 'UPDATED';",
                     types)

    checked = tsc(generated, "--noEmit")
    assert checked.returncode == 0, output(checked)


@e2e
def test_a_document_asking_for_a_field_the_schema_lacks_fails_codegen(project: Path) -> None:
    edit(project / "src" / "client.ts", "node { id text author", "node { id body author")

    result = codegen(project)

    assert result.returncode != 0, output(result)
    assert 'Cannot query field "body" on type "Message"' in output(result)


@pytest.mark.parametrize("sabotage", ["target-exists", "types-are-any"])
@e2e
def test_tsc_fails_when_an_expected_type_error_is_gone(project: Path, sabotage: str) -> None:
    """The ``@ts-expect-error`` lines are what prove the types: without an error on the
    line after one (a field that exists after all; generated types that are ``any``),
    tsc fails."""
    if sabotage == "target-exists":  # the document is the same: no codegen needed
        edit(project / "src" / "client.ts", "event.node.body;", "event.node.text;")
    else:
        types = project / "src" / "gql" / "graphql.ts"
        text = types.read_text(encoding="utf-8")
        text, count = re.subn(r"export type RoomMessagesSubscription = .*;",
                              "export type RoomMessagesSubscription = any;", text)
        assert count == 1
        types.write_text(text, encoding="utf-8")

    checked = tsc(project, "--noEmit")

    assert checked.returncode != 0, output(checked)
    assert "error TS2578: Unused '@ts-expect-error' directive." in output(checked)
    assert "src/client.ts(" in output(checked)  # the line in describe() says it


# ------------------------------------------------------------------ against the demo


class Lines:
    """A process's stdout, one JSON object per line, each read with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._queue.put(raw)
        self._queue.put(None)

    def next(self, timeout: float = 15) -> dict[str, Any]:
        try:
            raw = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the client printed nothing within {timeout}s") from None
        if raw is None:
            assert self.process.stderr is not None
            raise AssertionError("the client exited: "
                                 + self.process.stderr.read().decode(errors="replace"))
        line: dict[str, Any] = json.loads(raw)
        return line


@e2e
def test_the_compiled_client_receives_its_own_message(project: Path, demo_server: Server
                                                      ) -> None:
    built = tsc(project)
    assert built.returncode == 0, output(built)
    text = "typed all the way"
    process = subprocess.Popen(
        ["node", "dist/main.js", demo_server.ws_url, text], cwd=project,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = Lines(process)
        started = lines.next()
        assert started == {"rooms": ["general", "secret"], "subscribed": True}
        demo_server.wait_subscriptions(1)
        assert process.stdin is not None
        process.stdin.write(b"send\n")
        process.stdin.flush()

        received = lines.next()
        assert received["event"] == {
            "op": "CREATED", "id": received["id"], "cursor": received["event"]["cursor"],
            "node": {"id": received["id"], "text": text, "author": {"username": "alice"}},
        }
        assert received["event"]["cursor"]
        assert received["line"] == f"CREATED #{received['id']} alice: {text}"
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


# ------------------------------------------------------------------ the contract, the guide

#: ``graphql(`...`)`` in a TypeScript module: the document
GRAPHQL_CALL = re.compile(r"graphql\(`(.*?)`\)", re.DOTALL)


def test_the_clients_documents_are_the_contracts_operations() -> None:
    from graphql import OperationDefinitionNode, parse, print_ast

    client = (CODEGEN_DIR / "src" / "client.ts").read_text(encoding="utf-8")
    found = {}
    for source in GRAPHQL_CALL.findall(client):
        (operation,) = parse(source).definitions
        assert isinstance(operation, OperationDefinitionNode)
        assert operation.name is not None
        found[operation.name.value] = print_ast(operation)
    assert set(found) == set(OPERATIONS)
    for name, document in found.items():
        assert document == contract_operation(name), name


#: a fenced block of the guide with a title: the file it shows, its text
TITLED_BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
#: the files the guide shows, whole
SHOWN = {"tests/e2e/codegen/" + name for name in (
    "package.json", "codegen.ts", "tsconfig.json", "src/client.ts", "src/apollo.ts",
    "src/urql.ts")}


def test_the_guides_code_blocks_are_the_projects_files() -> None:
    blocks = TITLED_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert {title for title, _ in blocks} == SHOWN
    for title, text in blocks:
        assert text == (ROOT / title).read_text(encoding="utf-8"), f"{title} differs"

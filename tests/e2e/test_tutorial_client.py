"""The tutorial's JavaScript client, run as a reader runs it, against the demo under uvicorn.

``docs/examples/clients/book-changes.mjs`` is the block the tutorial shows ("From a
JavaScript client"; ``tests/test_docs.py`` keeps the two equal). A reader saves it in a
folder of its own, runs ``npm install graphql-ws ws`` there and ``node book-changes.mjs``.
Here the folder is a temporary one whose ``node_modules`` is ``tests/e2e/js``'s (the same
two packages, pinned), and the script runs on plain Node 20: no global ``WebSocket``, no
loader hooks. Only its environment says where the server is (``GRAPHQL_URL``), and whose
token to present (``GQLSYNC_TOKEN``), as the tutorial explains. A reader who points it at
a subscription that refuses them gets the refusal printed and a non-zero exit, not a
``TypeError``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import JS_DIR, ROOT, Server, node_available

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "docs" / "examples" / "clients" / "book-changes.mjs"
#: the script's subscription, and the demo's members-only one that a reader may point it at
BOOK_CHANGED = "subscription { bookChanged { op id node { title } } }"
MESSAGE_CHANGED = 'subscription { messageChanged(room: \\"general\\") { op id node { text } } }'
#: the mutation of the tutorial's curl command ("Try it in GraphiQL")
CREATE_BOOK = ('mutation { createBook(title: "Worth Dying For", authorEmail: "lee@child.com")'
               " { id } }")


class Script:
    """``node book-changes.mjs`` in its own process; its output lines, read in a thread."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            ["node", "book-changes.mjs"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = 10) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the script printed nothing in {timeout}s") from None
        if line is None:
            self.stop()
            assert self.process.stderr is not None
            raise AssertionError(f"the script exited ({self.process.returncode}): "
                                 f"{self.process.stderr.read()[-2000:]}")
        return line

    def state(self) -> str:
        """"running", or how it ended (its exit code and the end of its stderr)."""
        if self.process.poll() is None:
            return "running"
        assert self.process.stderr is not None
        return f"exited ({self.process.returncode}): {self.process.stderr.read()[-2000:]}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def reader_folder(tmp_path: Path) -> Path:
    """A folder holding the script and, as ``npm install graphql-ws ws`` would leave it,
    a ``node_modules`` with those packages."""
    node_available()
    for package in ("graphql-ws", "ws"):
        assert (JS_DIR / "node_modules" / package / "package.json").is_file(), (
            f"{package} is missing from tests/e2e/js/node_modules (npm ci there)")
    folder = tmp_path / "client"
    folder.mkdir()
    shutil.copyfile(SCRIPT, folder / "book-changes.mjs")
    (folder / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
    return folder


@pytest.fixture
def run_script(reader_folder: Path) -> Iterator[Callable[..., Script]]:
    started: list[Script] = []

    def run(**env: str) -> Script:
        base = {k: v for k, v in os.environ.items()
                if k not in ("GRAPHQL_URL", "GQLSYNC_TOKEN", "NODE_OPTIONS")}
        script = Script(reader_folder, {**base, **env})
        started.append(script)
        return script

    yield run
    for script in started:
        script.stop()


def test_the_tutorials_client_prints_each_change_anonymously_and_with_a_token(
    demo_server: Server, run_script: Callable[..., Script]
) -> None:
    anonymous = run_script(GRAPHQL_URL=demo_server.ws_url)
    signed_in = run_script(GRAPHQL_URL=demo_server.ws_url,
                           GQLSYNC_TOKEN=demo_server.token("alice"))
    try:  # both connected and subscribed: no 4403, no error
        demo_server.wait_subscriptions(2)
    except AssertionError as error:
        raise AssertionError(f"{error}; anonymous: {anonymous.state()}; "
                             f"with a token: {signed_in.state()}") from None

    result = demo_server.graphql(CREATE_BOOK)
    assert not result.get("errors"), result
    book_id = result["data"]["createBook"]["id"]

    expected: dict[str, Any] = {"op": "CREATED", "id": book_id,
                                "node": {"title": "Worth Dying For"}}
    assert json.loads(anonymous.next_line()) == expected
    assert json.loads(signed_in.next_line()) == expected


def test_a_refused_subscription_is_printed_and_ends_the_script(
    demo_server: Server, reader_folder: Path, run_script: Callable[..., Script]
) -> None:
    """An anonymous reader who points the script at the members-only ``messageChanged``
    is refused (``next`` with ``data: null``, then ``complete``): the script prints the
    refusal on stderr and exits with status 1."""
    script = reader_folder / "book-changes.mjs"
    text = script.read_text(encoding="utf-8")
    assert text.count(f'"{BOOK_CHANGED}"') == 1, "the script's subscription moved"
    script.write_text(text.replace(f'"{BOOK_CHANGED}"', f'"{MESSAGE_CHANGED}"'),
                      encoding="utf-8")

    refused = run_script(GRAPHQL_URL=demo_server.ws_url)
    try:
        refused.process.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("the refused script did not end") from None
    assert refused.process.returncode == 1, refused.state()
    assert refused.process.stderr is not None
    stderr = refused.process.stderr.read()
    assert stderr.startswith("refused: "), stderr
    errors = json.loads(stderr.removeprefix("refused: "))
    assert errors == [{"message": "You must be signed in.",
                       "extensions": {"code": "UNAUTHENTICATED"}}]
    assert refused.lines.get(timeout=5) is None  # nothing on stdout

"""The documentation: its examples run, its reference pages are complete, it builds.

How the examples are run. Every Python example of the docs is a file in ``docs/examples/``
(or a module of the demo, ``schema_examples/``) that a page shows as a copy, in a fenced
block whose title names the file: ```` ```python title="docs/examples/settings.py" ````.
The pages hold the code itself, so they read as plain Markdown on a code host too;
``test_a_titled_block_is_its_file`` keeps each copy equal to its file, so what a reader
sees is what runs here. The files are not named ``test_*.py`` and live outside
``testpaths``, so pytest never collects them on its own. This module loads each one
with :func:`load_example` (importlib, from its path) and either re-exports its test
functions under this module's names (pytest collects them here, with their marks), or
exercises its functions in a test below. ``test_every_example_is_shown_and_run`` keeps
the two lists honest: no example file goes untested or unshown.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.test.utils import isolate_apps

import gqlsync
from gqlsync import Op, conf, exceptions, registry
from gqlsync.testing import GraphQLWSClient, capture_events
from tests.conftest import CI

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
#: every page a reader may open: the site's pages and the repository's README
PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
#: an opening fence: its indentation, its backticks (or tildes) and its info string
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
TITLE = re.compile(r'(?:^|\s)title="(?P<title>[^"]+)"')


def load_example(name: str, module_name: str | None = None) -> ModuleType:
    """Import ``docs/examples/<name>.py`` (registered in ``sys.modules`` for import_string)."""
    module_name = module_name or f"gqlsync_docs_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def page(path: str) -> str:
    return (DOCS / path).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page: its text without the fence's indentation."""

    page: Path
    line: int  # of the opening fence, from 1
    info: str  # the info string: the language, then attributes such as title="..."
    text: str

    @property
    def title(self) -> str | None:
        match = TITLE.search(self.info)
        return match["title"] if match else None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(md: Path) -> list[Block]:
    """The fenced code blocks of ``md``, in order (nested in lists or admonitions too).

    A block closes at a line of the same character, at least as many, and nothing else;
    every line of its body must carry the opening fence's indentation (or be blank).
    """
    lines = md.read_text(encoding="utf-8").split("\n")
    blocks = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        start, body = number, []
        while number < len(lines) and not closing.match(lines[number]):
            line = lines[number]
            assert line.startswith(indent) or not line.strip(), (
                f"{md.relative_to(ROOT)}:{number + 1}: a line of the block at line {start} "
                "is indented less than its fence"
            )
            body.append(line[len(indent):])
            number += 1
        assert number < len(lines), f"{md.relative_to(ROOT)}:{start}: unclosed code block"
        number += 1  # the closing fence
        blocks.append(Block(md, start, opening["info"].strip(),
                            "".join(f"{line}\n" for line in body)))
    return blocks


def copies(md: Path) -> list[Block]:
    """The blocks of ``md`` that are copies of a file: their title is a repository path.

    A title with a ``/`` must name a file (a typo is not silently left unchecked); a
    title without one (``title="pyproject.toml"``) is only a label.
    """
    found = []
    for block in code_blocks(md):
        if block.title is None or "/" not in block.title:
            continue
        assert (ROOT / block.title).is_file(), (
            f"{block.where}: the block's title names no file: {block.title}")
        found.append(block)
    return found


# ----------------------------------------------------------------- examples that are tests

_capture = load_example("capture_events")
test_example_capture_net_effect = _capture.test_a_transaction_publishes_its_net_effect_at_commit
test_example_capture_update = _capture.test_an_update_says_what_changed_and_what_it_was
test_example_capture_savepoint = _capture.test_a_rolled_back_savepoint_publishes_nothing

_ws_client = load_example("ws_client")
test_example_ws_client = _ws_client.test_a_new_book_reaches_the_subscriber

_rejected = load_example("rejected_token")
test_example_rejected_token = _rejected.test_a_forged_token_closes_the_connection_with_4403

_room_access = load_example("room_access")
test_example_refused_subscription = _room_access.test_an_anonymous_subscriber_is_refused
test_example_execute_as_a_user = (
    _room_access.test_members_send_and_receive_and_others_are_refused)

_permission_rule = load_example("permission_rule")
test_example_permission_rule = _permission_rule.test_a_book_turned_draft_leaves_the_readers_view

_security_settings = load_example("security_settings")
test_example_security_settings = _security_settings.test_an_over_deep_query_is_refused

_filter_transitions = load_example("filter_transitions")
test_example_filter_transitions = (
    _filter_transitions.test_a_book_that_changes_author_leaves_and_enters)

_previous_state = load_example("previous_state")
test_example_previous_state = _previous_state.test_before_is_what_was_committed

_subscription_filters = load_example("subscription_filters")
test_example_subscription_filters = (
    _subscription_filters.test_a_regex_filter_is_refused_and_others_go_on)

_resume = load_example("resume")
test_example_resume = _resume.test_a_client_that_reconnects_misses_nothing

_where = load_example("where_arguments")
test_example_where_arguments = (
    _where.test_members_receive_the_rooms_messages_and_others_are_refused)

# Examples exercised by the tests below, by file name. Together with the re-exports
# above this must be every file in docs/examples/.
RUN_HERE = {
    "capture_events", "ws_client", "rejected_token", "room_access", "settings", "settings_redis",
    "register", "listen", "permissions", "token_authenticator", "notify", "tracked_queryset",
    "permission_rule", "security_settings", "subscription_filters",
    "previous_state", "filter_transitions", "resume", "where_arguments",
    # run by tests/test_metrics.py
    "metrics_urls", "metrics_asgi", "metrics_registry",
}


def test_every_example_is_shown_and_run() -> None:
    files = {p.stem for p in EXAMPLES.glob("*.py")}
    assert files == RUN_HERE, "add new examples to RUN_HERE and test them"
    # the client recipes (docs/examples/clients) are run by tests/e2e
    examples = {str(p.relative_to(ROOT)) for p in EXAMPLES.rglob("*")
                if p.suffix in (".py", ".mjs") and "node_modules" not in p.parts}
    shown = {block.title for md in PAGES for block in copies(md)}
    assert examples <= shown, f"examples no page shows: {sorted(examples - shown)}"


# ----------------------------------------------------------------- the pages hold the code


@pytest.mark.parametrize("md", PAGES, ids=lambda md: str(md.relative_to(ROOT)))
def test_a_titled_block_is_its_file(md: Path) -> None:
    """A block titled with a file's path is that file, character for character."""
    for block in copies(md):
        assert block.title is not None
        expected = (ROOT / block.title).read_text(encoding="utf-8")
        if block.text != expected:
            diff = "".join(difflib.unified_diff(
                expected.splitlines(keepends=True), block.text.splitlines(keepends=True),
                fromfile=block.title, tofile=block.where,
            ))
            pytest.fail(f"{block.where} is not a copy of {block.title}:\n{diff}")


def test_no_page_includes_files() -> None:
    """Pages show code, not include directives: on a code host (GitHub) they are read as
    plain Markdown, where ``--8<--`` (pymdownx.snippets) would show instead of the code."""
    including = [str(md.relative_to(ROOT)) for md in PAGES
                 if "--8<--" in md.read_text(encoding="utf-8")]
    assert including == [], f"pages with --8<-- include lines: {including}"


def test_the_pages_show_the_examples() -> None:
    """The block reader itself: it finds the copies, indented ones included."""
    titled = {(block.page.name, block.title) for md in PAGES for block in copies(md)}
    assert ("tutorial.md", "docs/examples/settings.py") in titled
    assert ("tutorial.md", "schema_examples/asgi.py") in titled
    # inside a list item: the fence and its lines are indented
    assert ("subscriptions.md", "docs/examples/filter_transitions.py") in titled
    assert ("delivery.md", "docs/examples/clients/resume-urql.mjs") in titled


# ----------------------------------------------------------------- examples run here


def _layer(config: dict[str, Any]) -> Any:
    from django.utils.module_loading import import_string

    return import_string(config["BACKEND"])(**config.get("CONFIG", {}))


async def test_example_settings() -> None:
    settings = load_example("settings")
    assert {"strawberry_django", "gqlsync"} <= set(settings.INSTALLED_APPS)
    with override_settings(GQLSYNC=settings.GQLSYNC):
        assert conf.get_settings()["ALLOWED_ORIGINS"] == ["https://app.example.com"]
    layer = _layer(settings.CHANNEL_LAYERS["default"])
    await layer.group_add("docs-example", "docs-example-channel")
    await layer.group_send("docs-example", {"type": "hello"})
    assert await layer.receive("docs-example-channel") == {"type": "hello"}


@pytest.mark.redis
async def test_example_settings_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer of the example keeps receiving on a read left idle for longer than
    channels-redis's 5 s blocking pop (redis-py 8's default socket timeout is 5 s too:
    without the example's ``socket_timeout`` the read fails with TimeoutError)."""
    from channels_redis.core import RedisChannelLayer

    monkeypatch.setenv("REDIS_URL", redis_url)
    settings = load_example("settings_redis", "gqlsync_docs_example_settings_redis_env")
    config = settings.CHANNEL_LAYERS["default"]
    prefix = f"gqlsync-docs-test-{uuid.uuid4().hex[:8]}"
    layer = _layer({**config, "CONFIG": {**config["CONFIG"], "prefix": prefix}})
    # the same hosts serve the Pub/Sub layer, which the scaling guide says works too
    pubsub = _layer({"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                     "CONFIG": {"hosts": config["CONFIG"]["hosts"], "prefix": prefix}})
    try:
        assert layer.brpop_timeout == 5 < 6  # what the idle wait below outlasts
        channel = await layer.new_channel()
        await layer.group_add("docs-example", channel)
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(6)  # idle: longer than the blocking pop and redis-py's default
        assert not receiving.done(), receiving.exception()
        await layer.group_send("docs-example", {"type": "hello"})
        assert await asyncio.wait_for(receiving, 5) == {"type": "hello"}
        await layer.group_discard("docs-example", channel)

        pubsub_channel = await pubsub.new_channel()
        await pubsub.group_add("docs-example", pubsub_channel)
        # group_add sends SUBSCRIBE without waiting for Redis to confirm it, so a publish
        # right after may come first and reach no one: publish until one arrives
        for _ in range(10):
            await pubsub.group_send("docs-example", {"type": "hello"})
            try:
                message = await asyncio.wait_for(pubsub.receive(pubsub_channel), 0.5)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("the Pub/Sub layer on the example's hosts received nothing")
        assert message == {"type": "hello"}
    finally:
        await pubsub.flush()
        assert isinstance(layer, RedisChannelLayer)
        await layer.flush()
        await layer.close_pools()
    sys.modules.pop("gqlsync_docs_example_settings_redis_env", None)


def test_example_register() -> None:
    # The example is a models.py: load it as a module of the bookstore app, with its
    # models in a throwaway app registry, and forget its registrations afterwards.
    with isolate_apps("schema_examples.bookstore"):
        models = load_example("register", "schema_examples.bookstore.docs_register_example")
    try:
        assert registry.get(models.Customer).snapshot_fields == ("id", "name", "email")
        # the primary key always travels; foreign keys travel as their ids
        assert registry.get(models.Order).snapshot_fields == ("id", "customer_id", "status")
        customer = models.Customer(pk=7, name="Ann", email="ann@example.com",
                                   password_hint="the cat")
        assert registry.snapshot(customer) == {"id": 7, "name": "Ann",
                                               "email": "ann@example.com"}
    finally:
        sys.modules.pop("schema_examples.bookstore.docs_register_example", None)
        for label in ("bookstore.customer", "bookstore.order"):
            registry._registry.pop(label, None)


@pytest.mark.django_db(transaction=True)
async def test_example_listen() -> None:
    from schema_examples.bookstore.models import Author, Book

    listen = load_example("listen")
    author = await sync_to_async(Author.objects.create)(name="Lee Child", email="l@c.example")
    async with GraphQLWSClient(listen.application) as client:
        matching = await client.subscribe(
            'subscription { booksMatching(text: "floor") { op id node { title } } }'
        )
        log = await client.subscribe("subscription { bookLog }")
        other = await sync_to_async(Book.objects.create)(title="Die Trying", author=author)
        book = await sync_to_async(Book.objects.create)(title="Killing Floor", author=author)

        assert (await matching.next(timeout=5))["data"]["booksMatching"] == {
            "op": "CREATED", "id": str(book.pk), "node": {"title": "Killing Floor"},
        }
        assert [(await log.next(timeout=5))["data"]["bookLog"] for _ in range(2)] == [
            f"CREATED book {other.pk} 'Die Trying' (-)",
            f"CREATED book {book.pk} 'Killing Floor' (-)",
        ]
        book.title = "Killing Floor (1997)"
        await sync_to_async(book.save)()
        assert (await log.next(timeout=5))["data"]["bookLog"] == (
            f"UPDATED book {book.pk} 'Killing Floor (1997)' (title)"
        )
        assert (await matching.next(timeout=5))["data"]["booksMatching"]["op"] == "UPDATED"
        await matching.nothing()


@pytest.mark.django_db
def test_example_permissions() -> None:
    from django.contrib.auth.models import AnonymousUser

    from schema_examples.bookstore.models import Author, Book

    permission = load_example("permissions").own_books_or_staff
    users = get_user_model().objects
    staff = users.create(username="editor", is_staff=True)
    lee = users.create(username="lee", email="lee@example.com")
    lee2 = users.create(username="lee-laptop", email="LEE@example.com")
    stranger = users.create(username="stranger")
    anonymous = AnonymousUser()
    mine = Book.objects.create(
        title="Killing Floor", author=Author.objects.create(name="Lee", email="lee@example.com")
    )
    theirs = Book.objects.create(
        title="Hot Six", author=Author.objects.create(name="Janet", email="j@example.com")
    )

    def visible(user: Any) -> set[str]:
        return set(permission.filter_queryset(user, Book.objects.all())
                   .values_list("title", flat=True))

    assert visible(staff) == {"Killing Floor", "Hot Six"}
    assert visible(lee) == {"Killing Floor"}
    assert visible(stranger) == visible(anonymous) == set()
    assert permission.has_object(lee, mine)
    assert not permission.has_object(lee, theirs)
    assert not permission.has_operation(anonymous)
    assert permission.has_operation(stranger)
    # equal scopes see equal rows (and differ where the rows differ)
    assert permission.scope(staff) == ("staff",)
    assert permission.scope(lee) == permission.scope(lee2) != permission.scope(stranger)


@pytest.mark.django_db
def test_example_token_authenticator() -> None:
    module = load_example("token_authenticator")
    users = get_user_model().objects
    bot = users.create(username="reporting-bot")
    alice = users.create(username="alice-docs")
    path = f"{module.__name__}.authenticate"
    with override_settings(SERVICE_TOKENS={"reporting-bot": "s3cret-service-token"},
                           GQLSYNC={"TOKEN_AUTHENTICATOR": path}):
        assert gqlsync.auth.user_for_token("s3cret-service-token") == bot
        assert gqlsync.auth.user_for_token(gqlsync.make_token(alice)) == alice
        with pytest.raises(gqlsync.auth.InvalidToken):
            gqlsync.auth.user_for_token("not-a-token")
        bot.is_active = False
        bot.save()
        with pytest.raises(gqlsync.auth.InvalidToken):
            gqlsync.auth.user_for_token("s3cret-service-token")


@pytest.mark.django_db(transaction=True)
def test_example_notify() -> None:
    from schema_examples.bookstore.models import Author, Book

    author = Author.objects.create(name="Lee Child", email="lee@example.com")
    padded = Book.objects.create(title="  Die Trying ", author=author)
    Book.objects.create(title="Killing Floor", author=author)
    with capture_events() as events:
        assert load_example("notify").trim_titles() == 1
    assert [(e.model, e.pk, e.op, e.changed) for e in events] == [
        ("bookstore.book", padded.pk, Op.UPDATED, ("title",))
    ]
    padded.refresh_from_db()
    assert padded.title == "Die Trying"


@pytest.mark.django_db(transaction=True)
def test_example_tracked_queryset() -> None:
    from schema_examples.bookstore.models import Author, Book

    module = load_example("tracked_queryset")
    author = Author.objects.create(name="Lee Child", email="lee@example.com")
    with capture_events() as created:
        books = module.add_books(author, ["Killing Floor", "Die Trying"])
    assert [(e.op, e.pk) for e in created] == [(Op.CREATED, b.pk) for b in books]
    with capture_events() as updated:
        assert module.mark_out_of_print(author) == 2
    assert sorted((e.pk, e.op, e.changed, e.before) for e in updated) == sorted(
        (b.pk, Op.UPDATED, ("title",), {"title": b.title}) for b in books
    )
    assert set(Book.objects.values_list("title", flat=True)) == {
        "Killing Floor (out of print)", "Die Trying (out of print)"
    }


def test_the_testing_guides_pytest_setup_runs_its_examples(tmp_path: Path) -> None:
    """A fresh project configured with the testing guide's pytest block runs the guide's
    examples, ``async def`` ones included, as the guide shows them and where it puts them.

    The project's settings are the demo's, passed with ``--ds`` (which overrides the
    block's ``myproject.settings``), on a SQLite file of its own.
    """
    md = DOCS / "guides" / "testing.md"
    (config,) = [b for b in code_blocks(md) if "[tool.pytest.ini_options]" in b.text]
    options = tomllib.loads(config.text)["tool"]["pytest"]["ini_options"]
    assert options["asyncio_mode"] == "auto"
    assert options["DJANGO_SETTINGS_MODULE"]
    (tmp_path / "pyproject.toml").write_text(config.text, encoding="utf-8")
    examples = [b for b in copies(md) if b.title and b.title.endswith(".py")]
    assert len(examples) == 4, [b.title for b in examples]
    for block in examples:
        # each example starts with the file it goes in: "# tests/test_books.py"
        where = re.fullmatch(r"# (tests/test_\w+\.py)", block.text.splitlines()[0])
        assert where, f"{block.where}: the example does not say where it goes"
        (tmp_path / where[1]).parent.mkdir(exist_ok=True)
        (tmp_path / where[1]).write_text(block.text, encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "DJANGO_"))
           and key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONPATH=str(ROOT), GQLSYNC_DEMO_DB=str(tmp_path / "demo.sqlite3"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--ds", "schema_examples.settings", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b7 passed\b", output), output
    assert "PytestDeprecationWarning" not in output, output


# ----------------------------------------------------------------- reference pages


def test_settings_reference_lists_every_setting() -> None:
    text = page("reference/settings.md")
    missing = [key for key in conf.DEFAULTS if f"`{key}`" not in text]
    assert missing == [], f"settings missing from docs/reference/settings.md: {missing}"
    documented = set(re.findall(r"^\|\s*`([A-Z_]+)`", text, re.MULTILINE))
    assert documented == set(conf.DEFAULTS), "the table lists a setting that does not exist"


def test_api_reference_names_every_public_name() -> None:
    text = page("reference/api.md")
    missing = [name for name in gqlsync.__all__ if f"`{name}" not in text]
    assert missing == [], f"public names missing from docs/reference/api.md: {missing}"


def test_errors_reference_names_every_exception() -> None:
    text = page("reference/errors.md")
    names = [
        name for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception)
        and value.__module__ == exceptions.__name__
    ]
    assert names, "gqlsync.exceptions defines no exceptions?"
    missing = [name for name in names if f"`{name}`" not in text]
    assert missing == [], f"exceptions missing from docs/reference/errors.md: {missing}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        message = "mkdocs-material is not installed (pip install -e '.[docs]')"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "guides" / "subscriptions" / "index.html").is_file()
    assert (tmp_path / "guides" / "security" / "index.html").is_file()
    # the included examples really are in the built pages
    testing = (tmp_path / "guides" / "testing" / "index.html").read_text(encoding="utf-8")
    assert "test_a_new_book_reaches_the_subscriber" in testing

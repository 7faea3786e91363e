"""The soak test's writer: ``SOAK_CHANGES`` changes to the demo's books through the ORM.

Run by ``tests/e2e/test_soak.py`` in a process of its own, with the servers' environment
(``DJANGO_SETTINGS_MODULE=schema_examples.settings``, ``GQLSYNC_DEMO_DB``, ``REDIS_URL``,
``GQLSYNC_REDIS_PREFIX``), so its commits reach the servers the way any other program's
would: gqlsync's commit hooks log them in Redis and send them on the channel layer.

Change ``n`` (0, 1, 2…) gives the row it creates or updates the title ``soak <n>``: a
row's titles then number its commits, in commit order. Mostly updates (a third of them
also move the book to the other author, a tenth go through ``QuerySet.update()``), some
creates and deletes; about a fifth of the changes are made in transactions of 2-8
changes, which may touch one row twice or create and delete it again.

Flow control: the test writes to stdin, one number a line, how many events the slowest
subscriber to every book has received; before each commit the writer waits while more
than ``SOAK_WINDOW`` of the events its commits owe that subscriber are still on their
way, so it never runs further ahead of the subscribers than the test allows. (Every
event owed arrives in the end, so this cannot deadlock.) When stdin closes (the test
is gone), a writer that would wait exits instead.

What it prints on stdout, one JSON object a line: ``{"ready": ...}`` once set up, then
at the end the counts the test checks against (``events_all``: what a subscriber to every
book must receive; ``events_lee``: what one filtered on Lee Child's books must receive).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time

import django

django.setup()

from django.db import connection, transaction  # noqa: E402

from schema_examples.bookstore.models import Author, Book  # noqa: E402

TOTAL = int(os.environ["SOAK_CHANGES"])
WINDOW = int(os.environ["SOAK_WINDOW"])
rng = random.Random(int(os.environ.get("SOAK_SEED", "1")))

received = 0
stopped = False
changed = threading.Condition()


def read_progress() -> None:
    global received, stopped
    for line in sys.stdin:
        with changed:
            received = max(received, int(line))
            changed.notify()
    with changed:
        stopped = True
        changed.notify()


def wait_for_subscribers() -> float:
    """Block while too many events are on their way; the seconds waited."""
    started = time.monotonic()
    with changed:
        while counts["events_all"] - received > WINDOW:
            if stopped:
                sys.exit(3)  # the test is gone: stop
            changed.wait()
    return time.monotonic() - started


with connection.cursor() as cursor:  # the writer's own connection: no fsync per commit
    cursor.execute("PRAGMA synchronous=NORMAL")

authors = {a.email: a.pk for a in Author.objects.all()}
LEE = authors["lee@child.com"]
author_ids = sorted(authors.values())
#: pk -> author id of every book that exists (as this writer's commits left them)
books: dict[int, int] = dict(Book.objects.values_list("pk", "author_id"))
live: list[int] = sorted(books)
counts = {"created": 0, "updated": 0, "moved": 0, "queryset_updates": 0, "deleted": 0,
          "transactions": 0, "in_transactions": 0, "events_all": 0, "events_lee": 0}


def change(n: int) -> tuple[int, int | None]:
    """Make change ``n``; the row it touched and that row's author before (None: new)."""
    title = f"soak {n}"
    roll = rng.random()
    if len(live) < 20 or roll < 0.10:
        author = rng.choice(author_ids)
        book = Book.objects.create(title=title, author_id=author)
        books[book.pk] = author
        live.append(book.pk)
        counts["created"] += 1
        return book.pk, None
    if roll < 0.18:
        pk = live.pop(rng.randrange(len(live)))
        Book.objects.get(pk=pk).delete()
        counts["deleted"] += 1
        return pk, books.pop(pk)
    pk = rng.choice(live)
    was = books[pk]
    move = rng.random() < 1 / 3
    author = next(a for a in author_ids if a != was) if move else was
    if rng.random() < 0.1:
        Book.objects.filter(pk=pk).update(title=title, author_id=author)
        counts["queryset_updates"] += 1
    else:
        book = Book.objects.get(pk=pk)
        book.title = title
        book.author_id = author
        book.save()
    books[pk] = author
    counts["updated"] += 1
    counts["moved"] += move
    return pk, was


def expect(before: dict[int, int | None]) -> None:
    """Count the events one commit owes each kind of subscriber: one per row it touched
    that exists (or is Lee's) before or after it (none for a row created and deleted
    again: gqlsync coalesces a transaction's changes per row)."""
    for pk, was in before.items():
        now = books.get(pk)
        counts["events_all"] += was is not None or now is not None
        counts["events_lee"] += was == LEE or now == LEE


threading.Thread(target=read_progress, daemon=True).start()
print(json.dumps({"ready": len(books)}), flush=True)
started = time.monotonic()
waited = 0.0
n = 0
while n < TOTAL:
    size = rng.randint(2, 8) if rng.random() < 0.05 else 1
    size = min(size, TOTAL - n)
    waited += wait_for_subscribers()
    before: dict[int, int | None] = {}
    if size == 1:
        pk, was = change(n)
        before[pk] = was
    else:
        with transaction.atomic():
            for i in range(size):
                pk, was = change(n + i)
                before.setdefault(pk, was)
        counts["transactions"] += 1
        counts["in_transactions"] += size
    expect(before)
    n += size

elapsed = time.monotonic() - started
print(json.dumps({**counts, "changes": n, "seconds": round(elapsed, 2),
                  "waited": round(waited, 2), "live": len(books)}), flush=True)

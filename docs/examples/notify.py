# bookstore/maintenance.py: a raw SQL write, announced with gqlsync.notify()
from django.db import connection, transaction

import gqlsync
from schema_examples.bookstore.models import Book


def trim_titles() -> int:
    """Strip surrounding spaces from every title in one statement."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Book._meta.db_table} SET title = TRIM(title)"
                " WHERE title <> TRIM(title) RETURNING id"
            )
            pks = [row[0] for row in cursor.fetchall()]
        # The ORM did not see this write: tell gqlsync. Published at commit.
        for pk in pks:
            gqlsync.notify(Book, pk, changed=["title"])
    return len(pks)

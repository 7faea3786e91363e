# Bulk writes through a TrackedManager publish events too, though they send no signals
from django.db.models import Value
from django.db.models.functions import Concat

from schema_examples.bookstore.models import Author, Book


def mark_out_of_print(author: Author) -> int:
    # one UPDATED event per matching row, each with its previous title in ``before``
    return Book.objects.filter(author=author).update(
        title=Concat("title", Value(" (out of print)"))
    )


def add_books(author: Author, titles: list[str]) -> list[Book]:
    # one CREATED event per new row (on databases that return the new keys)
    return Book.objects.bulk_create(Book(title=title, author=author) for title in titles)

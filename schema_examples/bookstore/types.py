import strawberry_django
from strawberry import auto

from schema_examples.bookstore import models


@strawberry_django.filter_type(models.Author, lookups=True)
class AuthorFilter:
    name: auto
    email: auto


@strawberry_django.filter_type(models.Book, lookups=True)
class BookFilter:
    title: auto
    author: AuthorFilter | None


@strawberry_django.type(models.Author, name="Author")
class AuthorType:
    id: auto
    name: auto
    email: auto


@strawberry_django.type(models.Book, name="Book", filters=BookFilter)
class BookType:
    id: auto
    title: auto
    author: AuthorType

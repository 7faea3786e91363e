from django.apps import AppConfig


class BookstoreConfig(AppConfig):
    name = "schema_examples.bookstore"
    label = "bookstore"

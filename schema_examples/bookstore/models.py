from django.db import models

import gqlsync


@gqlsync.register
class Author(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)

    objects = gqlsync.TrackedManager()

    def __str__(self) -> str:
        return self.name


@gqlsync.register
class Book(models.Model):
    title = models.CharField(max_length=300)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")

    objects = gqlsync.TrackedManager()

    def __str__(self) -> str:
        return self.title

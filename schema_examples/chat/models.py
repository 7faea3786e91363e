from django.conf import settings
from django.db import models

import gqlsync


@gqlsync.register
class Room(models.Model):
    name = models.SlugField(unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="rooms")

    objects = gqlsync.TrackedManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@gqlsync.register
class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    objects = gqlsync.TrackedManager()

    class Meta:
        ordering = ["created", "id"]

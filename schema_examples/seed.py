"""The demo's seed data (idempotent), as the contract describes it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

USERS = [("alice", "alice-pass", False), ("bob", "bob-pass", False), ("carol", "carol-pass", True)]
AUTHORS = {
    "janet@evanovich.com": ("Janet Evanovich", ["One for the Money", "Two for the Dough"]),
    "lee@child.com": ("Lee Child", ["Killing Floor", "Die Trying"]),
}
ROOMS = {"general": (["alice", "bob"], "Welcome to #general!"),
         "secret": (["alice"], "Only alice can read this.")}


@transaction.atomic
def seed() -> None:
    from schema_examples.bookstore.models import Author, Book
    from schema_examples.chat.models import Message, Room

    user_model = get_user_model()
    users = {}
    for username, password, staff in USERS:
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": staff}
        )
        if created:
            user.set_password(password)
            user.save()
        users[username] = user
    for email, (name, titles) in AUTHORS.items():
        author, _ = Author.objects.get_or_create(email=email, defaults={"name": name})
        if not author.books.exists():
            for title in titles:
                Book.objects.create(title=title, author=author)
    for name, (members, text) in ROOMS.items():
        room, _ = Room.objects.get_or_create(name=name)
        room.members.add(*(users[m] for m in members))
        if not room.messages.exists():
            Message.objects.create(room=room, author=users[members[0]], text=text)

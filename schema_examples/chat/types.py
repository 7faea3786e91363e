import strawberry_django
from django.contrib.auth import get_user_model
from strawberry import auto

import gqlsync
from schema_examples.chat import models
from schema_examples.chat.permissions import members_only, rooms_of_members


@strawberry_django.type(get_user_model(), name="User")
class UserType:
    id: auto
    username: auto


@gqlsync.protect(rooms_of_members)
@strawberry_django.type(models.Room, name="Room")
class RoomType:
    id: auto
    name: auto


@gqlsync.protect(members_only)
@strawberry_django.type(models.Message, name="Message")
class MessageType:
    id: auto
    text: auto
    author: UserType
    room: RoomType

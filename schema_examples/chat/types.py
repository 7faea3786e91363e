import strawberry_django
from django.contrib.auth import get_user_model
from strawberry import auto

from schema_examples.chat import models


@strawberry_django.type(get_user_model(), name="User")
class UserType:
    id: auto
    username: auto


@strawberry_django.type(models.Room, name="Room")
class RoomType:
    id: auto
    name: auto


@strawberry_django.type(models.Message, name="Message")
class MessageType:
    id: auto
    text: auto
    author: UserType
    room: RoomType

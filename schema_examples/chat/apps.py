from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "schema_examples.chat"
    label = "chat"

"""The demo serves everything through gqlsync's ASGI route; Django itself needs no URLs."""

urlpatterns: list[object] = []

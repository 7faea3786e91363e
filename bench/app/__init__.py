"""The Django project every benchmarked server runs: one model, three ASGI applications.

- ``asgi_gqlsync``: gqlsync's own application (``gqlsync.subscription``);
- ``asgi_baseline``: Strawberry + Channels the way Strawberry's docs teach it (a
  ``listen_to_channel`` resolver per subscriber, ``post_save`` -> ``group_send``);
- ``asgi_floor``: the same uvicorn + Channels stack writing one pre-serialized frame to
  every socket (the floor no GraphQL server can beat).
"""

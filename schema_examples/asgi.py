"""ASGI entry point of the demo: ``uvicorn schema_examples.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schema_examples.settings")
django_application = get_asgi_application()

import gqlsync.asgi  # noqa: E402
from schema_examples.schema import schema  # noqa: E402

application = gqlsync.asgi.application(
    schema, django_application=django_application, stats=True
)

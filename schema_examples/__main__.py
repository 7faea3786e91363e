"""``python -m schema_examples``: migrate, seed and serve the demo (GraphiQL URL printed)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schema_examples.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from schema_examples.seed import seed

    seed()
    if "--no-serve" in sys.argv:
        return
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"gqlsync demo: GraphiQL at http://{host}:{port}/graphql/", flush=True)
    uvicorn.run("schema_examples.asgi:application", host=host, port=port,
                log_level=os.environ.get("LOG_LEVEL", "warning"), lifespan="off")


if __name__ == "__main__":
    main()

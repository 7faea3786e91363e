"""A runnable gqlsync demo: a bookstore anyone may edit, and members-only chat rooms.

``python -m schema_examples`` migrates, seeds and serves it (GraphiQL at the printed URL).
"""

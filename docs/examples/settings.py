# settings.py (the parts gqlsync needs)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "strawberry_django",
    "gqlsync",  # connects the change-capture signal receivers at start-up
    "bookstore",
]

# One process, nothing else to run. For several processes, see the scaling guide.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": 10_000},
    },
}

# Optional: every key and its default is listed in the settings reference.
GQLSYNC = {
    "ALLOWED_ORIGINS": ["https://app.example.com"],
}

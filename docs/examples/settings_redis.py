# settings.py: several ASGI processes (or hosts) share one Redis
import os

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
            # messages a channel may hold before Channels drops new ones
            "capacity": 10_000,
        },
    },
}

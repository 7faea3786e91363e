# settings.py: several ASGI processes (or hosts) share one Redis
import os

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # one dict per Redis: its URL, and redis-py connection options
            "hosts": [{
                "address": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                # longer than channels-redis's 5 s blocking reads: redis-py 8's default
                # of 5 s makes idle connections fail every 5 s (see the scaling guide)
                "socket_timeout": 30,
                # TCP keepalive finds a connection a firewall or NAT dropped while quiet
                # (redis-py 8 turns it on by default, earlier versions do not)
                "socket_keepalive": True,
                # PING a pooled connection that sat idle this long before reusing it
                "health_check_interval": 30,
            }],
            # messages a channel may hold before Channels drops new ones
            "capacity": 10_000,
        },
    },
}

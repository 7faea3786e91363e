"""Transports: the protocol handlers that own the sockets and HTTP requests.

gqlsync reuses Strawberry's handlers for ``graphql-transport-ws`` and the legacy
``graphql-ws`` protocol (handshake, ping/pong, the named close codes, the per-connection
operation limit, origin checks) and adds what a Django project needs around them: the
user from a session or a bearer token, and the bundled GraphiQL page.
"""

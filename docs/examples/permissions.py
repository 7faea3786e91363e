# bookstore/permissions.py
from collections.abc import Hashable

from django.db.models import Q

from gqlsync import Permission
from gqlsync.auth import User


class OwnBooksOrStaff(Permission):
    """Staff see every book; an author signed in with their e-mail sees their own books."""

    messages = {"authenticated": "Sign in to follow your books."}

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        if getattr(user, "is_staff", False):
            return Q()  # every row
        if not user.is_authenticated or not user.email:
            return Q(pk__in=[])  # no row
        return Q(author__email=user.email)

    def scope(self, user: User) -> Hashable:
        # Users with equal scopes must see exactly the same rows: all staff members
        # do, and so do accounts that share an e-mail address.
        if getattr(user, "is_staff", False):
            return ("staff",)
        if not user.is_authenticated or not user.email:
            return ("nothing",)
        return ("author", user.email.lower())


own_books_or_staff = OwnBooksOrStaff()

# in the schema:
#     book_changed = gqlsync.subscription(BookType, permission=own_books_or_staff)

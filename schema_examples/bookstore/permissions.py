"""The bookstore is open: anyone may read and write it, and everyone shares one scope."""

from gqlsync import AllowAny

bookstore = AllowAny()

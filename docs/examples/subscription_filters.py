# settings.py: what a subscriber's filter may cost everyone else (these are the defaults)
GQLSYNC = {
    "ALLOW_REGEX_FILTERS": False,  # regex / iRegex lookups refused in subscriptions
    "MAX_FILTER_TERMS": 50,  # comparisons, list values and AND/OR/NOT nodes per filter
}


# tests/test_filters.py: a refused filter is a GraphQL error to that client alone
import pytest  # noqa: E402

from gqlsync.testing import GraphQLWSClient  # noqa: E402
from schema_examples.asgi import application  # noqa: E402

BY_TITLE = "subscription($f: BookFilter) { bookChanged(filters: $f) { op node { title } } }"


@pytest.mark.django_db(transaction=True)
async def test_a_regex_filter_is_refused_and_others_go_on() -> None:
    async with GraphQLWSClient(application) as client:
        refused = await client.subscribe(BY_TITLE, {"f": {"title": {"regex": "^(a+)+$"}}})
        error = await refused.message()
        assert error["type"] in ("error", "next")
        assert "Regular-expression filters" in str(error)
        accepted = await client.subscribe(BY_TITLE, {"f": {"title": {"startsWith": "Dune"}}})
        await accepted.nothing()  # subscribed, and quiet until a matching book changes

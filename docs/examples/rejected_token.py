# tests/test_auth.py
import pytest

from gqlsync.testing import ClosedError, GraphQLWSClient
from schema_examples.asgi import application


@pytest.mark.django_db(transaction=True)
async def test_a_forged_token_closes_the_connection_with_4403():
    client = GraphQLWSClient(application, payload={"authorization": "Bearer forged"})
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == 4403

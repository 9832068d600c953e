import pytest
from rest_framework.test import APIClient

from governance.access.permissions import Role


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["model", "user", "region"])
def test_nul_characters_in_the_query_are_400_not_500(role_user, param):
    client = APIClient()
    client.force_authenticate(role_user(Role.PLATFORM))
    query = {"model": "m", "user": "u", param: "a\x00b"}
    response = client.get("/api/v1/assign", query)
    assert response.status_code == 400
    assert param in response.json()["errors"]

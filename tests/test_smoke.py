import pytest

from governance.audit.services import audit_append, audit_verify


@pytest.mark.django_db
def test_audit_chain_appends_and_verifies():
    audit_append(actor=None, action="test.one", object_type="t", object_id=1, payload={"a": 1})
    audit_append(actor=None, action="test.two", object_type="t", object_id=2, payload={"b": [1, 2]})
    result = audit_verify()
    assert result.ok and result.length == 2

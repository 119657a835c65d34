"""``api/encoding.model_json`` is byte for byte ``model_dump_json()`` for the models it encodes (or fails where
that fails), whatever the text and the instants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentauth.api.encoding import model_json
from agentauth.issuer.schemas import AgentOut, AgentPage

ENCODED = (AgentOut, AgentPage)

instants = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))
agents = st.builds(
    AgentOut,
    id=st.text(),
    did=st.text(),
    name=st.text(),
    agent_type=st.text(),
    description=st.none() | st.text(),
    trust_level=st.text(),
    status=st.sampled_from(["active", "deactivated"]),
    parent_id=st.none() | st.text(),
    tenant_id=st.text(),
    scopes=st.lists(st.text(), max_size=4),
    created_at=instants,
    updated_at=instants,
    is_root=st.booleans(),
    is_active=st.booleans(),
    relationship=st.sampled_from(["member", "delegation_peer"]),
)
pages = st.builds(
    AgentPage,
    items=st.lists(agents, max_size=4),
    total=st.integers(0, 2**53),
    limit=st.integers(1, 100),
    offset=st.integers(0, 10**9),
)


def same_as_pydantic(model: BaseModel) -> None:
    try:
        expected = model.model_dump_json().encode()
    except ValueError:  # a lone surrogate: neither can encode it
        with pytest.raises(TypeError):
            model_json(model)
        return
    assert model_json(model) == expected


@settings(max_examples=300, deadline=None)
@given(agents)
def test_an_agent_encodes_as_pydantic_encodes_it(agent: AgentOut) -> None:
    same_as_pydantic(agent)


@settings(max_examples=150, deadline=None)
@given(pages)
def test_a_page_encodes_as_pydantic_encodes_it(page: AgentPage) -> None:
    same_as_pydantic(page)


def test_every_encoded_model_is_plain_fields() -> None:
    # model_json reads field values: an alias, a serializer, a computed field or extras would change the JSON.
    for model in ENCODED:
        assert not model.model_computed_fields, model
        assert model.model_config.get("extra") in (None, "ignore"), model
        assert not model.__pydantic_decorators__.field_serializers, model
        assert not model.__pydantic_decorators__.model_serializers, model
        for name, field in model.model_fields.items():
            assert field.alias in (None, name) and field.serialization_alias in (None, name), (model, name)
    assert model_json(AgentPage(items=[], total=0, limit=1, offset=0)) == b'{"items":[],"total":0,"limit":1,"offset":0}'

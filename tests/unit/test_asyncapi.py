"""The AsyncAPI document gives each channel the retention and writer the topic registry has."""

from events.catalog import Catalog
from events.topics import DERIVED_FAMILIES, EVENT_TOPICS, MEMBER_FAMILIES, Family
from gateway.asyncapi import asyncapi_document


def test_each_channel_states_its_own_cleanup_policy_and_who_writes_it() -> None:
    document = asyncapi_document(Catalog.load(), "demo")
    for family in Family:
        spec = EVENT_TOPICS[family]
        channel = document["channels"][family.value]
        policy = spec.config(spec.replication_factor)["cleanup.policy"]
        assert channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == [policy]
        assert ("compacted" in channel["description"]) == (policy == "compact")
        summary = document["operations"][f"publish_{family.value}"]["summary"]
        assert ("member institutions" in summary) == (family in MEMBER_FAMILIES)
    assert Family.PERSON not in MEMBER_FAMILIES and not DERIVED_FAMILIES & MEMBER_FAMILIES

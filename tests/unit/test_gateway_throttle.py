"""The pure parts of throttling logins and writes: how usernames and addresses are counted, and
what a group's creation costs."""

from __future__ import annotations

import redis.asyncio as redis

from gateway.auth.throttle import LoginThrottle, address_group
from gateway.infra.limits import group_create_cost


def test_usernames_are_folded() -> None:
    key = LoginThrottle(redis.Redis())._username_key
    assert key("Alice") == key("alice") == key(" ALICE ")


def test_ipv4_addresses_count_alone() -> None:
    assert address_group("192.0.2.7") == "192.0.2.7"
    assert address_group("192.0.2.7") != address_group("192.0.2.8")


def test_ipv6_addresses_count_by_their_64() -> None:
    assert address_group("2001:db8:1:2::1") == address_group("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:3::1") != address_group("2001:db8:1:2::1")


def test_an_ipv4_mapped_address_counts_as_ipv4() -> None:
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7"


def test_an_address_that_is_not_ip_counts_as_its_text() -> None:
    assert address_group("unix-socket") == "unix-socket"


def test_a_group_costs_one_write_per_fifty_members_plus_one() -> None:
    assert [group_create_cost(n) for n in (2, 49, 50, 500)] == [1, 1, 2, 11]

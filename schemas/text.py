"""Constraints every stored string and number shares, whatever path it comes in by."""

from __future__ import annotations

from pydantic import AfterValidator

PG_BIGINT_MAX = 2**63 - 1
"""`seq` is a PostgreSQL bigint: a larger number names nothing, and must not reach a query."""


def no_nul(value: str) -> str:
    """PostgreSQL's text cannot hold U+0000: a write with one would be acknowledged and then never
    reach the read models, so it is refused where the client hears of it."""
    if "\x00" in value:
        raise ValueError("must not contain U+0000")
    return value


Clean = AfterValidator(no_nul)

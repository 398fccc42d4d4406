"""What makes a secret unusable: a placeholder, the old well-known defaults, or too few distinct characters.

Standard library only: `scripts/make-env` imports it before the project's venv exists, to decide
which values of an existing `.env` it must replace; `config.settings` refuses the same values.
"""

from __future__ import annotations

PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "placeholder", "your-secret")
"""A value containing one of these (in any case) was copied from an example, never generated."""
OLD_DEFAULTS = frozenset({"messenger", "secret", "password"})
"""Values the project once shipped, or that anyone would guess."""
MIN_DISTINCT_CHARACTERS = 10
"""A random secret of 32 hex digits has fewer than 10 distinct characters about once in 14,000;
one of 64 hex digits or of `secrets.token_urlsafe` never in practice. `x` * 32 or a word repeated has."""


def weakness(value: str, min_length: int) -> str | None:
    """Why `value` cannot be a secret, in a few words; None when it can."""
    if len(value) < min_length:
        return f"shorter than {min_length} characters"
    lowered = value.lower()
    if lowered in OLD_DEFAULTS or any(mark in lowered for mark in PLACEHOLDER_MARKS):
        return "a placeholder or a well-known default; generate one (make env)"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"fewer than {MIN_DISTINCT_CHARACTERS} distinct characters; generate one (make env)"
    return None

"""Records into statement parameters, as `projections.apply.to_params` gives them, in fewer steps.

`schemas.events.decode_event` validates the envelope, then its payload, then builds the `Event`
(validating it once more). For a record written at its type's current version, one validation
of a typed envelope (the same `Envelope` fields, the same payload model) gives the same values,
and the projection's `params` reads them from it (`type`, `occurred_at`, `payload`: the typed
envelope has every field of an `Event`). This module does that, and hands anything else (an
older version to upcast, an unknown type, any validation error, a value PostgreSQL cannot store)
to `to_params`, which decides how it is skipped. The rules stay where they are: the models and
upcasters in `schemas/events.py`, the parameters in each projection's `params`, the skipping in
`projections/apply.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from projections.apply import Skipped, storable, to_params
from projections.model import Params, Projection, Record
from schemas import codec
from schemas.events import EVENT_TYPES, Envelope


def typed_envelopes() -> TypeAdapter[Any]:
    """`Envelope` with the payload model of its type, one model per type, told apart by `type`."""
    models = [
        create_model(
            f"Typed{name.title().replace('.', '').replace('_', '')}",
            __base__=Envelope,
            type=(Literal[name], ...),  # type: ignore[arg-type]  # a literal built from data
            payload=(model, ...),
        )
        for name, (_, model) in EVENT_TYPES.items()
    ]
    union: Any = Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


TYPED = typed_envelopes()
CURRENT = {name: version for name, (version, _) in EVENT_TYPES.items()}


def current_event(value: bytes) -> Any:
    """The envelope of a record at its type's current version with its payload parsed (what an
    `Event` holds, without building one); None for anything else."""
    try:
        typed = TYPED.validate_python(codec.loads(value))
    except ValueError:
        return None
    return typed if typed.version == CURRENT[typed.type] else None


def fast_params(projection: Projection, value: bytes | None) -> Params | None:
    """The statement's parameters of a record at its type's current version, of this projection's
    types, that PostgreSQL can store; None for any other record (`to_params` judges it)."""
    if not value or projection.decode is not None:
        return None
    event = current_event(value)
    if event is None:
        return None
    try:
        params = projection.params(event)
    except Exception:  # a foreign type
        return None
    return params if storable(params) else None


def params_of(projection: Projection, record: Record) -> Params | Skipped:
    """What `to_params(projection, record)` gives."""
    params = fast_params(projection, record.value)
    return to_params(projection, record) if params is None else params

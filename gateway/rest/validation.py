"""Query parameters validated by the pydantic models of `schemas.api`."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.rest.errors import from_validation_error

M = TypeVar("M", bound=BaseModel)


def query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; 400 naming the parameter when it is wrong."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise from_validation_error(error) from None

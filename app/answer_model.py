"""The base of every model the gateway answers with, so its OpenAPI schema says what is sent.

A field with a default is still always sent, so the serialization schema lists it as `required`
(generated clients then type it as present, not optional). Only a field left out of the JSON
when empty (`exclude_if`) stays optional.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _omitted_fields_optional(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    omitted = {
        field.alias or name
        for name, field in cls.model_fields.items()
        if field.exclude_if is not None
    }
    required = [name for name in schema.get("required", ()) if name not in omitted]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)


class AnswerModel(BaseModel):
    """A response body: every field it always sends is `required` in the document."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_omitted_fields_optional,
    )

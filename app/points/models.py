"""The merged points answer: one schema for every provider."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, PlainSerializer, WithJsonSchema

from app.answer_model import AnswerModel
from app.problems import Problem

PointsDecimal = Annotated[
    Decimal,
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "decimal",
            "pattern": r"^-?\d+(\.\d+)?$",
            "description": "A decimal number as a string, exact (never a float).",
            "examples": ["12000", "250.0"],
        }
    ),
]


class BalanceStatus(StrEnum):
    """Whether a balance entry holds points (`ok`) or the problem that kept them away."""

    OK = "ok"
    ERROR = "error"


class Balance(AnswerModel):
    """One provider's entry in an answer: a balance, or the problem that kept it away."""

    provider: str = Field(examples=["benepia"])
    status: BalanceStatus
    points: PointsDecimal | None = None
    unit: str | None = Field(default=None, examples=["benepia_point"])
    as_of: datetime | None = Field(default=None, description="When the provider gave this value.")
    cached: bool = False
    stale: bool = False
    error: Problem | None = None
    details: dict[str, PointsDecimal] | None = Field(
        default=None,
        description="Named amounts beside the balance (expiring, pending, ...), for providers "
        "that report any; absent otherwise.",
        examples=[{"expiring": "1200"}],
        exclude_if=lambda value: value is None,
    )


class PointsAnswer(AnswerModel):
    """Every balance a user holds across their linked providers."""

    user_id: str
    complete: bool = Field(
        description="True when every provider answered; mirrors X-Points-Complete."
    )
    balances: list[Balance]


class PointsProblem(Problem):
    """The problem of an aggregated request in which every provider failed."""

    user_id: str
    complete: bool = False
    balances: list[Balance]

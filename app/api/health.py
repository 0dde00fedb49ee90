"""Liveness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process is up and serving."""

    status: Literal["ok"] = "ok"


@router.get("/healthz", operation_id="get_health", summary="Liveness", response_model=Health)
async def get_health() -> Health:
    """Answers 200 while the process serves requests."""
    return Health()

"""Reference: the least a gateway can do, two upstream calls on one shared aiohttp session.

Run with uvicorn (`uvicorn bench.reference_fanout:app`); upstream from BENCH_UPSTREAM.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:18080")
GAFAPAY_USER = "fb8f09210e0f46b7b4262d77f5b6c273"
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
_state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    async with session.post(
        f"{UPSTREAM}/users/getToken", json={"imp_key": "k", "imp_secret": "s"}
    ) as answer:
        _state["token"] = (await answer.json())["response"]["access_token"]
    _state["session"] = session
    yield
    await session.close()


app = FastAPI(lifespan=lifespan)


async def _benepia(session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.post(
        f"{UPSTREAM}/benepia/point",
        json={"benepia_user": "u", "benepia_password": "p", "channel_key": "c"},
        headers={"Authorization": f"Bearer {_state['token']}"},
    ) as answer:
        body = await answer.json()
    return {"provider": "benepia", "status": "ok", "points": str(body["response"]["point"])}


async def _gafapay(session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.get(
        f"{UPSTREAM}/gafapay/v3/reward_promotion/user_points",
        params={"user_id": GAFAPAY_USER, "currency_id": CURRENCY},
        headers={"authorization": "Token t", "companyid": "ab", "requestid": "cd"},
    ) as answer:
        body = await answer.json()
    points = body["data"]["user_points"]["points"]
    return {"provider": "gafapay", "status": "ok", "points": str(points)}


@app.get("/users/{user_id}/points")
async def points(user_id: str) -> dict[str, Any]:
    session: aiohttp.ClientSession = _state["session"]
    entries = await asyncio.gather(_benepia(session), _gafapay(session))
    return {"user_id": user_id, "complete": True, "points": list(entries)}

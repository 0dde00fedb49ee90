"""Reference: a trivial FastAPI JSON route answering a body the size of the gateway's.

The body is read from BENCH_STATIC_BODY (a JSON file written by the harness).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

_path = os.environ.get("BENCH_STATIC_BODY")
BODY: dict[str, Any] = json.loads(Path(_path).read_text()) if _path else {"points": []}

app = FastAPI()


@app.get("/users/{user_id}/points")
async def points(user_id: str) -> dict[str, Any]:
    return BODY

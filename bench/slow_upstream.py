"""A slow stand-in for both providers: same answers as the nginx config, after a sleep.

`python -m bench.slow_upstream PORT BENEPIA_DELAY GAFAPAY_DELAY` (seconds; the token endpoint
answers at once); listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from bench.upstream_bodies import BENEPIA_POINT, GAFAPAY_POINTS, GET_TOKEN


def build(benepia_delay: float, gafapay_delay: float) -> web.Application:
    async def token(_: web.Request) -> web.Response:
        return web.Response(text=GET_TOKEN, content_type="application/json")

    async def benepia(_: web.Request) -> web.Response:
        await asyncio.sleep(benepia_delay)
        return web.Response(text=BENEPIA_POINT, content_type="application/json")

    async def gafapay(_: web.Request) -> web.Response:
        await asyncio.sleep(gafapay_delay)
        return web.Response(text=GAFAPAY_POINTS, content_type="application/json")

    app = web.Application()
    app.router.add_post("/users/getToken", token)
    app.router.add_post("/benepia/point", benepia)
    app.router.add_get("/gafapay/v3/reward_promotion/user_points", gafapay)
    return app


def main() -> None:
    port, benepia_delay, gafapay_delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    app = build(benepia_delay, gafapay_delay)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()

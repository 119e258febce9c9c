"""localstripe (a stateful fake of the Stripe API) on a free 127.0.0.1 port, for the stripe-python tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

from processes import free_port, terminate, wait_for_http

# localstripe's own CLI binds every interface: its aiohttp app is started here instead. Every answer gets a
# Request-Id header, as Stripe's do (stripe-python keeps it as `last_response.request_id`; a webhook event
# names the request that made its change).
SERVER = """
import itertools
from aiohttp import web
from localstripe.server import app

ids = itertools.count(1)


@web.middleware
async def request_id(request, handler):
    response = await handler(request)
    response.headers["Request-Id"] = "req_%d" % next(ids)
    return response


app.middlewares.append(request_id)
web.run_app(app, host="127.0.0.1", port={port})
"""


def localstripe_server() -> Iterator[str]:
    """Run localstripe until the generator is closed; yields its base URL (a module-scoped fixture's body)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/js.stripe.com/v3/", proc, "localstripe", any_answer=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        terminate(proc)

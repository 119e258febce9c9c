"""Wiring the reviews into the store service: the monthly close's loop, the sign-off recorder, `/reviews`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..db import Store
from ..ingest import LogBatch
from .generate import reports_dir
from .schedule import CloseConfig, CloseLoop, MonthlyClose
from .signoff import ReviewEvents

__all__ = ["Reviews", "include_reviews", "open_reviews"]


@dataclass
class Reviews:
    """The service's review state: its own store handle, recorder, close and loop."""

    store: Store
    directory: Path
    events: ReviewEvents
    close: MonthlyClose
    loop: CloseLoop | None

    def shutdown(self) -> None:
        """Stop the loop, deliver the spooled events, release the handle."""
        if self.loop is not None:
            self.loop.stop()
        self.events.close()
        self.store.close()


def open_reviews(url: str, database: str, write: Callable[[LogBatch], Any], forward: str | None = None) -> Reviews:
    """Open the reviews (after migrations) and start the close's loop unless AUDITRAIL_REVIEW_SCHEDULE=off;
    review events are forwarded to `forward` (forward.py) too."""
    config = CloseConfig.from_env()
    handle = Store.open(url, database)
    events = ReviewEvents(handle, write, forward=forward)
    directory = reports_dir(url)
    close = MonthlyClose(handle, directory, events, config)
    loop = CloseLoop(close) if config.enabled else None
    if loop is not None:
        loop.start()
    return Reviews(handle, directory, events, close, loop)


def include_reviews(app: FastAPI) -> None:
    """`/v1/reviews` and the `/reviews` page."""
    from .api import router
    from .page import router as page_router

    app.include_router(router)
    app.include_router(page_router)

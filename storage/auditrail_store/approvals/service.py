"""Wiring approvals into the store service: the store handle it opens and the routes it adds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ..db import Store
from ..ingest import LogBatch
from .store import ApprovalStore

__all__ = ["include_approvals", "open_approvals"]


def open_approvals(url: str, database: str, write: Callable[[LogBatch], Any],
                   forward: str | None = None) -> ApprovalStore:
    """The service's approval store on a handle of its own (called when the app starts, after migrations);
    its decision events are written with `write` (the service's ingest writer) and forwarded to `forward`."""
    from ..migrate import installed_cluster
    from .events import DecisionEvents

    handle = Store.open(url, database)
    return ApprovalStore(handle, cluster=installed_cluster(handle) is not None, events=DecisionEvents(url, write, forward=forward))


def include_approvals(app: FastAPI) -> None:
    """`/v1/approvals` and the `/approvals` page."""
    from .api import router
    from .page import router as page_router

    app.include_router(router)
    app.include_router(page_router)

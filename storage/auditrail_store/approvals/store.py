"""Approval requests in the store: submit (create, find, claim), list, decide. The rules live here.

Every change goes through one lock of the service process, so on a single node (embedded chDB, or one
service replica over a server) reading a request and writing its next version is atomic. Single use is
also an insert-once claim (table ``approval_claims``): on a cluster that table is a KeeperMap written with
``keeper_map_strict_mode = 1``, so of several replicas racing to claim one approval exactly one insert
succeeds (migration 0020 says why KeeperMap).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import uuid_utils

from ..db import Store, StoreError, tenant_scope

__all__ = ["APPROVAL_STATES", "Approval", "ApprovalError", "ApprovalStore"]

logger = logging.getLogger("auditrail.store")

APPROVAL_STATES = ("pending", "granted", "denied", "expired", "used")
_COLUMNS = ("approval_id", "tenant_id", "digest", "event_type", "target", "requester", "impersonator", "bound",
            "before", "reason", "approvers", "approved_by", "decided_by", "decision_reason", "state", "created_at",
            "expires_at", "decided_at", "used_at", "version")
_TYPES = ("String", "String", "String", "String", "String", "String", "String", "String", "String", "String",
          "UInt8", "String", "String", "String", "String", "DateTime64(3, 'UTC')", "DateTime64(3, 'UTC')",
          "Nullable(DateTime64(3, 'UTC'))", "Nullable(DateTime64(3, 'UTC'))", "UInt64")


class ApprovalError(StoreError):
    """A request that cannot be honoured; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Approval:
    """One approval request, its newest version."""

    approval_id: str
    tenant_id: str
    digest: str
    event_type: str
    target: str
    requester: str
    impersonator: str
    bound: str
    before: str
    reason: str
    approvers: int
    approved_by: str
    decided_by: str
    decision_reason: str
    state: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    used_at: datetime | None
    version: int

    @property
    def approvers_so_far(self) -> list[str]:
        """Who approved it so far."""
        return list(json.loads(self.approved_by or "[]"))

    def effective_state(self, now: datetime | None = None) -> str:
        """`expired` for a pending or granted request past its time; the stored state otherwise."""
        expires = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=timezone.utc)
        if self.state in ("pending", "granted") and (now or _now()) >= expires:
            return "expired"
        return self.state

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the API answers with."""
        return {"id": self.approval_id, "tenant": self.tenant_id, "digest": self.digest, "event": self.event_type,
                "target": self.target, "requester": self.requester, "impersonator": self.impersonator or None,
                "bound": json.loads(self.bound or "null"), "before": json.loads(self.before or "null"),
                "reason": self.reason or None, "approvers": self.approvers, "approved_by": self.approvers_so_far,
                "decided_by": self.decided_by or None, "decision_reason": self.decision_reason or None,
                "state": self.effective_state(), "created_at": _iso(self.created_at),
                "expires_at": _iso(self.expires_at), "decided_at": _iso(self.decided_at),
                "used_at": _iso(self.used_at)}

    def row(self) -> dict[str, Any]:
        """The column values, for an insert."""
        return {name: getattr(self, name) for name in _COLUMNS}


class ApprovalStore:
    """The approvals and approval_claims tables of one store, behind the service's approval lock."""

    def __init__(self, store: Store, cluster: bool = False, events: Any = None) -> None:
        self._store = store
        self._events = events  # DecisionEvents: approval.granted/denied/expired into the tenant's chain
        self._table = store.table("approvals")
        self._claims = store.table("approval_claims")
        self._cluster = cluster
        # Every read-then-write of approvals in this process, and every statement on the handle (a server's
        # HTTP session refuses overlapping queries): re-entrant, since decide() reads under it.
        self.lock = threading.RLock()

    def close(self) -> None:
        """Deliver the spooled approval events, then release the store handle."""
        if self._events is not None:
            self._events.close()
        self._store.close()

    # --- the app's side ------------------------------------------------------------------------

    def submit(self, request: dict[str, Any], caller: str) -> tuple[int, Approval]:
        """The app's call needing approval: (200, the claimed approval) when a granted one exists for its
        digest; (202, the pending one) when one waits; (201, a new one) otherwise. A request found expired
        here is marked so (its approval.expired event)."""
        digest = request["digest"]
        with self.lock:
            now = _now()
            rows = self._select("digest = {digest:String} AND tenant_id = {t:String}",
                                {"digest": digest, "t": request["tenant"] or ""})
            for row in rows:
                state = row.effective_state(now)
                if state == "granted" and self._claim(row.approval_id, caller, now):
                    row.state, row.used_at = "used", now
                    self._write(row)
                    return 200, row
                if state == "expired" and row.state != "expired":
                    row.state = "expired"
                    self._write(row)
                    self._record("approval.expired", row)
            for row in rows:
                if row.effective_state(now) == "pending":
                    return 202, row
            approval = Approval(
                str(uuid_utils.uuid7()), request["tenant"] or "", digest, request["event"], request["target"],
                request["requester"] or "", request.get("impersonator") or "", _json(request.get("bound")),
                _json(request.get("before")), (request.get("reason") or "")[:1000], int(request["approvers"]), "[]",
                "", "", "pending", now, now + timedelta(seconds=int(request["ttl_seconds"])), None, None, 0)
            self._write(approval)
            return 201, approval

    # --- people's side -------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval | None:
        """The newest version of one request."""
        with self.lock:
            rows = self._select("approval_id = {id:String}", {"id": approval_id})
        return rows[0] if rows else None

    def list(self, tenant: str | None = None, state: str | None = None, limit: int = 500) -> list[Approval]:
        """Requests, newest first; `tenant` None: every tenant (the caller may see them all)."""
        params: dict[str, Any] = {}
        where = tenant_scope(tenant, params) if tenant is not None else "1"
        with self.lock:
            rows = self._select(where, params, limit)
        return [r for r in rows if state is None or r.effective_state() == state]

    def decide(self, approval_id: str, approver: str, approve: bool, reason: str,
               may_act_for: Any) -> Approval:
        """Approve or deny as `approver`. The rules: pending and unexpired; the approver is neither the
        requester nor the requester's impersonator, and has not approved it already; `may_act_for(tenant)`
        says the caller holds `approve` for the request's tenant."""
        approver = (approver or "").strip()
        if not approver:
            raise ApprovalError("the approver must be named (an approve token's holder, or --as for admins)", 400)
        with self.lock:
            approval = self.get(approval_id)
            if approval is None or not may_act_for(approval.tenant_id):
                raise ApprovalError(f"no approval {approval_id} that you may decide", 404)
            state = approval.effective_state()
            if state != "pending":
                raise ApprovalError(f"approval {approval_id} is {state}, not pending", 409)
            if approver.casefold() == approval.requester.casefold():
                raise ApprovalError(f"{approver} requested this action and may not approve it (self-approval)", 403)
            if approval.impersonator and approver.casefold() == approval.impersonator.casefold():
                raise ApprovalError(f"{approver} was impersonating the requester and may not approve it", 403)
            so_far = approval.approvers_so_far
            if approver.casefold() in (a.casefold() for a in so_far):
                raise ApprovalError(f"{approver} already approved {approval_id}; another person must", 409)
            now = _now()
            approval.decided_by, approval.decision_reason, approval.decided_at = approver, reason[:1000], now
            if approve:
                so_far.append(approver)
                approval.approved_by = json.dumps(so_far)
                if len(so_far) >= approval.approvers:
                    approval.state = "granted"
            else:
                approval.state = "denied"
            self._write(approval)
            if approval.state != "pending":  # (one of several approvers so far: the table has it)
                self._record(f"approval.{approval.state}", approval)
            return approval

    def _record(self, event_type: str, approval: Approval) -> None:
        """The decision's audit event (never lost: spooled on disk; never fatal: the decision stands)."""
        if self._events is None:
            return
        try:
            self._events.record(event_type, approval)
        except Exception:  # noqa: BLE001
            logger.exception("approval %s: its %s event could not be recorded", approval.approval_id, event_type)

    # --- SQL -----------------------------------------------------------------------------------

    def _select(self, where: str, params: dict[str, Any], limit: int = 500) -> list[Approval]:
        params = dict(params, limit=limit)
        rows = self._store.query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self._table} FINAL WHERE {where}"
            " ORDER BY created_at DESC LIMIT {limit:UInt32}", params).result_rows
        return [Approval(*row) for row in rows]

    def _write(self, approval: Approval) -> None:
        approval.version += 1
        values = ", ".join(f"{{{name}:{kind}}}" for name, kind in zip(_COLUMNS, _TYPES, strict=True))
        self._store.command(f"INSERT INTO {self._table} ({', '.join(_COLUMNS)}) VALUES ({values})", approval.row())

    def _claim(self, approval_id: str, caller: str, now: datetime) -> bool:
        """The single use: True for exactly one claim of `approval_id` (insert-once)."""
        params = {"id": approval_id, "at": now, "by": caller}
        if not self._cluster:  # under self.lock: check, then insert
            taken = self._store.query(f"SELECT count() FROM {self._claims} WHERE approval_id = {{id:String}}",
                                      params).result_rows[0][0]
            if taken:
                return False
        try:
            self._store.command(
                f"INSERT INTO {self._claims} (approval_id, claimed_at, claimed_by) VALUES"
                " ({id:String}, {at:DateTime64(3, 'UTC')}, {by:String})", params,
                settings={"keeper_map_strict_mode": 1} if self._cluster else None)
        except Exception as exc:  # noqa: BLE001 - KeeperMap strict mode: the key exists, another replica won
            if "KEEPER_EXCEPTION" in str(exc) or "already exists" in str(exc) or "KeyExists" in str(exc):
                return False
            raise
        return True


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)

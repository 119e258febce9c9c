"""`auditrail approvals list|approve|deny`: deciding approval requests from the command line.

Three ways to reach the requests, in this order: ``--service URL`` with ``--token`` (an ``approve`` token: its
holder is the approver; or ``$AUDITRAIL_SERVICE_URL`` / ``$AUDITRAIL_TOKEN``); the running service that owns
the embedded store (its local admin door); the store itself. The last two are the operator's own access
(admin): they record the person named with ``--as`` as the approver, who must not be the requester.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["add_parser", "run_approvals"]

STATES = ("pending", "granted", "denied", "expired", "used")


def add_parser(sub: Any) -> None:
    """`approvals` and its verbs on the store CLI's subparsers."""
    common = [("--url", {"default": None, "help": "storage URL (default $AUDITRAIL_CLICKHOUSE_URL or the embedded store)"}),
              ("--service", {"default": os.environ.get("AUDITRAIL_SERVICE_URL"),
                             "help": "the approval service's URL (default $AUDITRAIL_SERVICE_URL)"}),
              ("--token", {"default": None, "help": "a token for --service (default $AUDITRAIL_TOKEN)"})]
    approvals = sub.add_parser("approvals", help="list, approve and deny approval requests")
    verbs = approvals.add_subparsers(dest="approvals_command", required=True)
    listing = verbs.add_parser("list", help="approval requests, newest first")
    listing.add_argument("--tenant", default=None)
    listing.add_argument("--state", choices=STATES, default=None)
    listing.add_argument("--json", action="store_true")
    for name, help_text in (("approve", "approve a pending request"), ("deny", "deny a pending request")):
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument("approval_id")
        verb.add_argument("--reason", required=name == "approve", default="",
                          help="why (recorded with the decision)")
        verb.add_argument("--as", dest="approver", default=None,
                          help="the person deciding (needed without an approve token)")
        for parser in (verb,):
            for flag, kwargs in common:
                parser.add_argument(flag, **kwargs)
    for flag, kwargs in common:
        listing.add_argument(flag, **kwargs)


def run_approvals(args: Any) -> int:
    """Run one verb; 0 done, 1 refused (with the reason on stderr)."""
    from ..db import StoreError

    status, body = _call(args)
    if status >= 400:
        detail = body.get("detail") if isinstance(body, dict) else body
        print(f"auditrail approvals {args.approvals_command}: refused ({status}): {detail}", file=sys.stderr)
        return 1
    if status == 0:
        raise StoreError(str(body))
    if args.approvals_command == "list":
        _print_list(body, args.json)
    else:
        print(f"{body['id']}: {body['state']} ({args.approvals_command}d by {body['decided_by']}: "
              f"{body['decision_reason'] or 'no reason given'})")
    return 0


def _call(args: Any) -> tuple[int, Any]:
    """(HTTP-like status, JSON body) from the service or the store."""
    verb = args.approvals_command
    token = args.token or os.environ.get("AUDITRAIL_TOKEN")
    payload = None if verb == "list" else {"reason": args.reason or None, "approver": args.approver}
    path = "/v1/approvals" if verb == "list" else f"/v1/approvals/{args.approval_id}/{verb}"
    params = {k: v for k, v in (("tenant", args.tenant), ("state", args.state)) if v} if verb == "list" else None
    if args.service:
        import httpx

        if not token:
            return 0, "--service needs --token (or $AUDITRAIL_TOKEN)"
        response = httpx.request("GET" if verb == "list" else "POST", args.service.rstrip("/") + path, params=params,
                                 json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return response.status_code, _json(response)
    from ..admin import open_store_or_service

    store, service = open_store_or_service(args.url)
    if service is not None:
        response = service.request("GET" if verb == "list" else "POST", path, params=params, json=payload)
        return response.status_code, _json(response)
    return _direct(store, args, payload)


def _direct(store: Any, args: Any, payload: dict[str, Any] | None) -> tuple[int, Any]:
    """The store itself, as its operator (admin of every tenant)."""
    from fastapi import HTTPException

    from ..migrate import migrate
    from ..tokens import ALL_TENANTS, TokenInfo
    from .api import decide_as
    from .store import ApprovalStore

    with store:
        migrate(store)
        approvals = ApprovalStore(store)
        if args.approvals_command == "list":
            return 200, [a.to_dict() for a in approvals.list(args.tenant, args.state)]
        operator = TokenInfo("cli", ALL_TENANTS, "admin", "the store's operator")
        try:
            approval = decide_as(approvals, operator, args.approval_id, args.approvals_command == "approve",
                                 args.reason, args.approver)
        except HTTPException as error:
            return error.status_code, {"detail": error.detail}
        return 200, approval.to_dict()


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:300]}


def _print_list(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items, indent=1))
        return
    if not items:
        print("no approval requests")
        return
    print(f"{'APPROVAL':<37} {'STATE':<8} {'TENANT':<12} {'EVENT':<22} {'REQUESTER':<20} WITH")
    for item in items:
        bound = json.dumps(item["bound"], sort_keys=True)
        print(f"{item['id']:<37} {item['state']:<8} {item['tenant'][:12]:<12} {item['event'][:22]:<22} "
              f"{item['requester'][:20]:<20} {bound[:80]}")

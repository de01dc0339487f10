"""The permission gate: each route declares the permission it needs and its audit action.

A route is built with `guarded(path, endpoint, methods=..., permission=..., action=...)`.
`tessera.dicomweb.access.AccessMiddleware` authenticates the caller, finds the route that
will answer the request (`route_gate`, Starlette's own matching), refuses with 403 when the
caller's Scope lacks the declared permission, and after the response records the declared
audit action. Handlers check no permission themselves (they still check the rights a change
hands out: `tessera.auth.delegation`).

A route that matches but declares nothing is refused (fail closed); a path no route matches
gets the app's 404/405 after authentication.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute, get_route_path
from starlette.types import Scope

from tessera.auth.audit import Event

# Audit actions a route may declare (recorded by the middleware after the response).
AUDIT_QUERY = "query"
AUDIT_RETRIEVE = "retrieve"
AUDIT_UPLOAD = "upload"


@dataclass(frozen=True)
class Gate:
    # None: any authenticated caller (e.g. /me, /logout).
    permission: str | None
    # AUDIT_QUERY, AUDIT_RETRIEVE or AUDIT_UPLOAD; None: not recorded by the middleware
    # (admin changes record themselves in the transaction of the change).
    action: str | None = None


# What an undeclared route needs: a permission no role holds.
UNDECLARED = Gate(permission="undeclared")


class GuardedRoute(Route):
    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: list[str],
        permission: str | None,
        action: str | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.gate = Gate(permission, action)


class GuardedWebSocketRoute(WebSocketRoute):
    """A WebSocket route with its permission declared (authenticated by the middleware
    like any request, before the connection is accepted)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, permission: str | None) -> None:
        super().__init__(path, endpoint)
        self.gate = Gate(permission)


def guarded(
    path: str,
    endpoint: Callable[..., Any],
    *,
    methods: list[str],
    permission: str | None,
    action: str | None = None,
) -> GuardedRoute:
    """A route with its permission and audit action declared."""
    return GuardedRoute(path, endpoint, methods=methods, permission=permission, action=action)


@dataclass(frozen=True)
class Matched:
    gate: Gate
    # The ASGI scope as the route sees it (path params, root path).
    scope: Scope


def route_gate(routes: Iterable[BaseRoute], scope: Scope) -> Matched | None:
    """The gate of the route that will answer `scope`, as Starlette's router picks it (the
    first full match; a Mount's first full match is final). None: no route matches fully, the
    app answers 404 or 405."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        merged = {**scope, **child}
        if isinstance(route, Mount):
            return route_gate(route.routes, merged)
        if isinstance(route, (GuardedRoute, GuardedWebSocketRoute)):
            return Matched(route.gate, merged)
        return Matched(UNDECLARED, merged)
    return None


def audit_target(matched: Matched) -> str:
    """What the audit event names: the study of an upload or retrieval, the query of a
    search (its path under the DICOMweb root and query string)."""
    params = matched.scope.get("path_params", {})
    query_string = matched.scope.get("query_string", b"").decode("latin-1")
    if matched.gate.action == AUDIT_QUERY:
        path = get_route_path(matched.scope)
        return path + ("?" + query_string if query_string else "")
    study = params.get("study")
    if study is None and matched.gate.action == AUDIT_RETRIEVE:  # WADO-URI names it in the query
        study = (parse_qs(query_string).get("studyUID") or [""])[0]
    return study or ""


def denied_event(
    scope: Scope,
    tenant_id: int | None,
    principal: str,
    detail: dict,
    action: str = "denied",
) -> Event:
    """The audit event of a refused request (401 `authenticate`, 403 `denied`)."""
    client = scope.get("client") or ("", 0)
    return Event(
        tenant_id,
        principal,
        action,
        "denied",
        target=f"{scope.get('method', 'GET')} {scope['path']}"[:512],
        detail=detail,
        remote_addr=client[0] if client else "",
    )

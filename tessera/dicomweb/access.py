"""Access control for every HTTP request: which tenant, who is calling, may they.

`AccessMiddleware` runs before routing. It resolves the tenant from the path (`/t/{tenant}/...`,
or the default tenant for `/dicomweb` and `/api/v1`), authenticates the request
(tessera.auth.authenticate), checks the permission the answering route declares
(tessera.dicomweb.gate), and leaves the Scope in the ASGI scope, where
`tessera.dicomweb.context.scope_of` reads it. After the response it records the route's
declared audit action (uploads, queries, study-level retrievals) and every denial.

WebSocket connections (the UPS-RS notification channel) are admitted the same way before
they are accepted (`_websocket`). Only `/healthz`, `POST .../api/v1/login`, the static files of the viewer (`/viewer/`) and of
the portal (`/portal/`), and CORS preflights (OPTIONS) pass without credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.archive import Archive
from tessera.auth.audit import AuditLog, Event
from tessera.auth.authenticate import CHALLENGE, AuthenticationFailed, Identity, authenticate
from tessera.auth.oidc import OidcValidator, validator_for
from tessera.config import Settings
from tessera.dicomweb.errors import problem
from tessera.dicomweb.gate import (
    AUDIT_RETRIEVE,
    Matched,
    audit_target,
    denied_event,
    route_gate,
)
from tessera.index.tenancy import TenantInfo, tenant_by_name
from tessera.scope import Scope as CallerScope

log = logging.getLogger(__name__)

TENANT_PATH = re.compile(r"^/t/([^/]+)(/.*)?$")
PUBLIC_PATHS = frozenset({"/healthz"})
# The static files of the viewer (tessera serve --viewer) and of the portal (tessera.portal)
# hold no data: the browser apps then call the DICOMweb and API roots, which authenticate.
PUBLIC_PREFIXES = ("/viewer/", "/portal/")
LOGIN_PATH = "/api/v1/login"
# Keys in the ASGI scope.
SCOPE_KEY = "tessera.scope"
IDENTITY_KEY = "tessera.identity"
TENANT_KEY = "tessera.tenant"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def anonymous_enabled(settings: Settings) -> bool:
    """Whether anonymous requests may be served at all (loopback, not turned off); each
    request is checked further (`_anonymous_allowed`)."""
    return settings.anonymous.lower() != "off" and is_loopback(settings.host)


@dataclass
class AccessControl:
    """Per-process state of access control (built when the app starts)."""

    archive: Archive
    oidc: OidcValidator | None = None
    tenants: dict[str, TenantInfo] = field(default_factory=dict)

    @classmethod
    def open(cls, archive: Archive) -> AccessControl:
        return cls(archive, validator_for(archive.settings))

    @property
    def audit(self) -> AuditLog:
        """The archive's audit writer (the archive closes it)."""
        return self.archive.audit

    @property
    def anonymous_enabled(self) -> bool:
        return anonymous_enabled(self.archive.settings)

    def tenant(self, name: str | None) -> TenantInfo | None:
        if name is None:
            return self.archive.default_tenant
        cached = self.tenants.get(name)
        if cached is not None:
            return cached
        with self.archive.database.read() as conn:
            found = tenant_by_name(conn, name)
        if found is not None:  # tenants are never renamed or removed: cache for good
            self.tenants[name] = found
        return found


def announce_access_mode(settings: Settings) -> None:
    """Say loudly at start-up whether anonymous requests are served."""
    if anonymous_enabled(settings):
        log.warning(
            "ANONYMOUS ACCESS IS ON: any program on this machine can read, upload and "
            "administer the default tenant without credentials (loopback quick start). "
            "Set TESSERA_ANONYMOUS=off to require credentials; listening on a non-loopback "
            "address turns anonymous access off",
            extra={"host": settings.host, "anonymous": settings.anonymous},
        )
    else:
        log.info(
            "every request needs credentials (Bearer token, API key or Basic)",
            extra={"host": settings.host, "anonymous": settings.anonymous},
        )


def _is_public(path: str, method: str) -> bool:
    """Requests that pass without credentials (health, CORS preflights, the files of the
    viewer and the portal)."""
    return (
        path in PUBLIC_PATHS
        or method == "OPTIONS"
        or path.startswith(PUBLIC_PREFIXES)
        or any(path == prefix.rstrip("/") for prefix in PUBLIC_PREFIXES)
    )


def _remote(scope: Scope) -> str:
    client = scope.get("client") or ("", 0)
    return client[0] if client else ""


def _anonymous_allowed(
    access: AccessControl, tenant: TenantInfo, remote: str, headers: dict[str, str]
) -> bool:
    return (
        access.anonymous_enabled
        and tenant.id == access.archive.default_tenant.id
        and is_loopback(remote or "127.0.0.1")
        # Through a reverse proxy the real caller is not on this machine.
        and "x-forwarded-for" not in headers
        and "forwarded" not in headers
    )


BEARER_SUBPROTOCOL = "bearer."


def websocket_authorization(scope: Scope) -> str | None:
    """The credentials of a WebSocket handshake: its Authorization header, else a token
    offered as the subprotocol `bearer.<token>` (browsers cannot set headers on a WebSocket;
    a subprotocol, unlike a query parameter, stays out of access logs)."""
    for key, value in scope["headers"]:
        if key.lower() == b"authorization":
            return value.decode("latin-1")
    for protocol in scope.get("subprotocols") or ():
        if protocol.startswith(BEARER_SUBPROTOCOL) and len(protocol) > len(BEARER_SUBPROTOCOL):
            return "Bearer " + protocol[len(BEARER_SUBPROTOCOL) :]
    return None


class AccessMiddleware:
    """Per request: public? -> tenant -> authenticate -> the route's permission -> the app ->
    the route's audit action."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http" or _is_public(scope["path"], scope["method"]):
            await self.app(scope, receive, send)
            return
        access: AccessControl = scope["app"].state.access
        path: str = scope["path"]
        tenant, rest = await self._tenant(access, path)
        if tenant is None:
            await problem(404, f"no resource at {path}")(scope, receive, send)
            return
        scope[TENANT_KEY] = tenant
        if rest == LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        # The gate the answering route declares (None: no route, the app answers 404/405).
        matched = route_gate(scope["app"].router.routes, scope)
        admitted = await self._admit(access, scope, tenant, matched)
        if isinstance(admitted, Response):  # 401 or 403, already audited
            await admitted(scope, receive, send)
            return
        caller, identity = admitted
        scope[SCOPE_KEY] = caller
        scope[IDENTITY_KEY] = identity
        await self._call_and_audit(access, scope, receive, send, tenant, caller.principal, matched)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket connection (the UPS-RS notification channel) is admitted like a
        request, before it is accepted: tenant, credentials (the Authorization header, or
        for browsers, which cannot set it, a `bearer.<token>` WebSocket subprotocol), the
        route's permission. A refusal is the HTTP answer to the upgrade (401, 403, 404)."""
        access: AccessControl = scope["app"].state.access
        tenant, _ = await self._tenant(access, scope["path"])
        matched = None if tenant is None else route_gate(scope["app"].router.routes, scope)
        if tenant is None or matched is None:
            await problem(404, f"no resource at {scope['path']}")(scope, receive, send)
            return
        scope[TENANT_KEY] = tenant
        admitted = await self._admit(access, scope, tenant, matched, websocket_authorization(scope))
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)
            return
        scope[SCOPE_KEY], scope[IDENTITY_KEY] = admitted
        await self.app(scope, receive, send)

    async def _admit(
        self,
        access: AccessControl,
        scope: Scope,
        tenant: TenantInfo,
        matched: Matched | None,
        authorization: str | None = None,
    ) -> tuple[CallerScope, Identity] | Response:
        """The caller's Scope and Identity, or the 401/403 answer (recorded as denied). The
        permission is the one the answering route declares (tessera.dicomweb.gate)."""
        try:
            caller, identity = await self._authenticate(access, scope, tenant, authorization)
        except AuthenticationFailed as exc:
            access.audit.add(
                denied_event(
                    scope, tenant.id, exc.attempted, {"reason": exc.detail}, "authenticate"
                )
            )
            return problem(401, exc.detail, headers={"WWW-Authenticate": CHALLENGE})
        needed = matched.gate.permission if matched is not None else None
        if needed is not None and not caller.can(needed):
            access.audit.add(
                denied_event(scope, tenant.id, caller.principal, {"permission": needed})
            )
            return problem(403, f"this operation needs the '{needed}' permission")
        return caller, identity

    @staticmethod
    async def _tenant(access: AccessControl, path: str) -> tuple[TenantInfo | None, str]:
        """The tenant a path addresses (`/t/{tenant}/...`, else the default) and the rest."""
        match = TENANT_PATH.match(path)
        tenant_name, rest = (match.group(1), match.group(2) or "/") if match else (None, path)
        tenant = access.tenants.get(tenant_name) if tenant_name else access.archive.default_tenant
        if tenant is None:
            tenant = await run_in_threadpool(access.tenant, tenant_name)
        return tenant, rest

    @staticmethod
    async def _authenticate(
        access: AccessControl, scope: Scope, tenant: TenantInfo, authorization: str | None = None
    ) -> tuple[CallerScope, Identity]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        anonymous_allowed = _anonymous_allowed(access, tenant, _remote(scope), headers)
        authorization = authorization or headers.get("authorization")
        if authorization:  # a database look-up (or an OIDC key fetch): off the event loop
            return await run_in_threadpool(
                authenticate,
                access.archive.database,
                tenant,
                authorization,
                anonymous_allowed,
                access.oidc,
            )
        return authenticate(access.archive.database, tenant, None, anonymous_allowed)

    async def _call_and_audit(
        self,
        access: AccessControl,
        scope: Scope,
        receive: Receive,
        send: Send,
        tenant: TenantInfo,
        principal: str,
        matched: Matched | None,
    ) -> None:
        """Run the app, then record the route's declared audit action with the status it
        answered."""
        status = 500

        async def send_capturing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_capturing_status)
        finally:
            if matched is not None and matched.gate.action is not None:
                action = matched.gate.action
                outcome = "ok" if status < 400 else "denied" if status in (401, 403) else "failed"
                event = Event(
                    tenant.id,
                    principal,
                    action,
                    outcome,
                    target=audit_target(matched),
                    detail={"status": status, "method": scope["method"]},
                    remote_addr=_remote(scope),
                )
                if action == AUDIT_RETRIEVE:
                    access.audit.add_retrieval(event)
                else:
                    access.audit.add(event)

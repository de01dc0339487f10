"""What the events REST modules (change feed, webhooks, routes, notifications) share beyond
`tessera.dicomweb.api_common`: bounded integer query parameters, lists of names, the sources
a subscription or rule is limited to, and a checked outbound URL. They raise the client
errors of `tessera.dicomweb.errors` (answered by the app's exception-handler table)."""

from __future__ import annotations

from starlette.requests import Request

from tessera.config import Settings
from tessera.dicomweb.errors import BadRequest
from tessera.index.sources import source_pks
from tessera.scope import Scope
from tessera.services.outbound import TargetRefused, check_url


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def string_list(body: dict, name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"'{name}' must be a list of non-empty strings")
    return value


def sources_for(conn, scope: Scope, names: list[str]) -> frozenset[int]:
    """The source keys a subscription or rule of `scope` is limited to. A name the caller
    does not see is answered like an unknown one; a source-locked caller who names none
    gets its own sources (never 'every source')."""
    try:
        found = source_pks(conn, scope.tenant_id, names)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    keys = frozenset(found.values())
    if scope.source_pks is not None:
        hidden = sorted(name for name, key in found.items() if key not in scope.source_pks)
        if hidden:
            raise BadRequest(f"unknown source(s): {', '.join(hidden)}")
        return keys or scope.source_pks
    return keys


def checked_url(url: str, settings: Settings) -> str:
    try:
        check_url(url, settings.outbound_allow_private)
    except TargetRefused as exc:
        raise BadRequest(f"'url' refused: {exc}") from None
    return url

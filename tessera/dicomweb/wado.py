"""WADO-RS (PS3.18 §10.4) and WADO-URI (§9) routes, relative to a tenant's DICOMweb root.

One module per resource kind: wado_instances (stored objects), wado_metadata (DICOM JSON),
wado_frames, wado_bulkdata, wado_rendered (rendered and thumbnail), wado_uri. Content
negotiation lives in negotiation.py, validators and 304s in caching.py, CORS in cors.py.
Every route needs `read` and is audited as a retrieval (tessera.dicomweb.gate).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tessera.auth.permissions import READ
from tessera.dicomweb.gate import AUDIT_RETRIEVE, GuardedRoute, guarded
from tessera.dicomweb.wado_bulkdata import retrieve_bulk_data
from tessera.dicomweb.wado_frames import retrieve_frames
from tessera.dicomweb.wado_instances import retrieve_instances
from tessera.dicomweb.wado_metadata import retrieve_metadata
from tessera.dicomweb.wado_rendered import retrieve_rendered, retrieve_thumbnail
from tessera.dicomweb.wado_uri import wado_uri

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"


def _retrieval(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> GuardedRoute:
    return guarded(path, endpoint, methods=["GET"], permission=READ, action=AUDIT_RETRIEVE)


routes: list[BaseRoute] = [
    _retrieval(_STUDY, retrieve_instances),
    _retrieval(_SERIES, retrieve_instances),
    _retrieval(_INSTANCE, retrieve_instances),
    _retrieval(_STUDY + "/metadata", retrieve_metadata),
    _retrieval(_SERIES + "/metadata", retrieve_metadata),
    _retrieval(_INSTANCE + "/metadata", retrieve_metadata),
    _retrieval(_INSTANCE + "/frames/{frames}", retrieve_frames),
    _retrieval(_INSTANCE + "/bulkdata/{tag}", retrieve_bulk_data),
    *[
        _retrieval(base + "/" + kind, endpoint)
        for base in (_STUDY, _SERIES, _INSTANCE, _INSTANCE + "/frames/{frames}")
        for kind, endpoint in (("rendered", retrieve_rendered), ("thumbnail", retrieve_thumbnail))
    ],
    _retrieval("/wado", wado_uri),
    # Viewers configured with wadoUriRoot = the DICOMweb root ask {root}?requestType=WADO.
    _retrieval("/", wado_uri),
]

"""WADO-RS (PS3.18 §10.4) and WADO-URI (§9) routes, relative to a tenant's DICOMweb root.

One module per resource kind: wado_instances (stored objects), wado_metadata (DICOM JSON),
wado_frames, wado_bulkdata, wado_rendered (rendered and thumbnail), wado_uri. Content
negotiation lives in negotiation.py, validators and 304s in caching.py, CORS in cors.py.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from tessera.dicomweb.wado_bulkdata import retrieve_bulk_data
from tessera.dicomweb.wado_frames import retrieve_frames
from tessera.dicomweb.wado_instances import retrieve_instances
from tessera.dicomweb.wado_metadata import retrieve_metadata
from tessera.dicomweb.wado_rendered import retrieve_rendered, retrieve_thumbnail
from tessera.dicomweb.wado_uri import wado_uri

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"

routes: list[BaseRoute] = [
    Route(_STUDY, retrieve_instances, methods=["GET"]),
    Route(_SERIES, retrieve_instances, methods=["GET"]),
    Route(_INSTANCE, retrieve_instances, methods=["GET"]),
    Route(_STUDY + "/metadata", retrieve_metadata, methods=["GET"]),
    Route(_SERIES + "/metadata", retrieve_metadata, methods=["GET"]),
    Route(_INSTANCE + "/metadata", retrieve_metadata, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frames}", retrieve_frames, methods=["GET"]),
    Route(_INSTANCE + "/bulkdata/{tag}", retrieve_bulk_data, methods=["GET"]),
    *[
        Route(base + "/" + kind, endpoint, methods=["GET"])
        for base in (_STUDY, _SERIES, _INSTANCE, _INSTANCE + "/frames/{frames}")
        for kind, endpoint in (("rendered", retrieve_rendered), ("thumbnail", retrieve_thumbnail))
    ],
    Route("/wado", wado_uri, methods=["GET"]),
    # Viewers configured with wadoUriRoot = the DICOMweb root ask {root}?requestType=WADO.
    Route("/", wado_uri, methods=["GET"]),
]

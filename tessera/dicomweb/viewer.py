"""Serve a prebuilt OHIF v3 viewer (the `dist/` folder of the npm package `@ohif/app`) under
a path of this server, with its app-config.js pointed at the tenant's DICOMweb root.

The prebuilt site assumes it lives at "/": its index.html links "/app.bundle...js", every
webpack runtime sets its public path to "/" and its CSS loads fonts from "/". Rebuilding OHIF
to move it is a Node build we do not want in the server, so those few absolute paths are
rewritten as the files are served (the result is cached per file and base path).

Run on its own, this module serves the viewer on another origin (pointing at a Tessera
running elsewhere), e.g. to try a cross-origin deployment:

    python -m tessera.dicomweb.viewer DIST --port 3000 --dicomweb-root http://127.0.0.1:8080/dicomweb
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from tessera.dicomweb.urls import origin

DEFAULT_VIEWER_PATH = "/viewer"

# The webpack runtime line of every OHIF bundle (app, workers): chunks, wasm and workers are
# loaded relative to it.
_WEBPACK_PUBLIC_PATH = b'__webpack_require__.p = "/"'


def find_dist(path: Path) -> Path:
    """The OHIF dist/ folder: `path` itself, or its dist/ (an installed @ohif/app package)."""
    for candidate in (path, path / "dist"):
        if (candidate / "index.html").is_file() and (candidate / "app-config.js").is_file():
            return candidate.resolve()
    raise ValueError(
        f"{path} is not a prebuilt OHIF viewer: no index.html and app-config.js in it or in "
        "its dist/ folder (install one with `npm pack @ohif/app` and unpack it)"
    )


def app_config(dicomweb_root: str, router_basename: str) -> str:
    """OHIF's window.config for one DICOMweb data source (the format of OHIF 3.x)."""
    config: dict[str, Any] = {
        "routerBasename": router_basename,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        # Both would cover the image with a dialog on a server without a GPU or without
        # cross-origin isolation, which changes nothing about what the viewer can show.
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "defaultDataSourceName": "tessera",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "tessera",
                "configuration": {
                    "friendlyName": "Tessera",
                    "name": "tessera",
                    "wadoUriRoot": dicomweb_root,
                    "qidoRoot": dicomweb_root,
                    "wadoRoot": dicomweb_root,
                    # Tessera answers includefield and filters on the server, so OHIF needs
                    # none of its workarounds for static or partial servers.
                    "qidoSupportsIncludeField": True,
                    "supportsWildcard": True,
                    "supportsFuzzyMatching": False,
                    "staticWado": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "thumbnail",
                    "enableStudyLazyLoad": True,
                    "supportsReject": False,
                    "singlepart": "bulkdata,video,pdf",
                    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                    "omitQuotationForMultipartRequest": True,
                },
            }
        ],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class Viewer:
    """The viewer's files under `mount_path`, with the prebuilt site's "/" paths moved there."""

    def __init__(
        self,
        dist: Path,
        mount_path: str = DEFAULT_VIEWER_PATH,
        dicomweb_root: str | None = None,
        dicomweb_path: str = "/dicomweb",
    ) -> None:
        self.dist = find_dist(dist)
        self.mount_path = "/" + mount_path.strip("/")
        # None: the DICOMweb root on the origin (and proxy prefix) the browser used.
        self.dicomweb_root = dicomweb_root
        self.dicomweb_path = dicomweb_path
        self.static = StaticFiles(directory=self.dist)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(self.mount_path, self.redirect, methods=["GET", "HEAD"]),
            Route(self.mount_path + "/{path:path}", self.serve, methods=["GET", "HEAD"]),
        ]

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse(self._base(request), status_code=308)

    async def serve(self, request: Request) -> Response:
        path = request.path_params["path"]
        base = self._base(request)
        if path == "app-config.js":
            root = self.dicomweb_root or self._same_origin_root(request)
            return Response(
                app_config(root, base.rstrip("/")),
                media_type="text/javascript",
                headers={"Cache-Control": "no-cache"},
            )
        file = self._file(path)
        if file is None:
            # A route of the single-page app (/viewer?StudyInstanceUIDs=..., /viewer/local):
            # the app itself decides what to show.
            return self._index(base)
        if file.suffix in (".js", ".css"):
            patched = _rewritten(str(file), file.stat().st_mtime_ns, base)
            if patched is not None:
                return Response(
                    patched,
                    media_type="text/css" if file.suffix == ".css" else "text/javascript",
                    headers={"Cache-Control": "no-cache"},
                )
        if path in ("", "index.html"):
            return self._index(base)
        return await self.static.get_response(path, request.scope)

    def _file(self, path: str) -> Path | None:
        if not path:
            return None
        candidate = (self.dist / path).resolve()
        if not candidate.is_relative_to(self.dist) or not candidate.is_file():
            return None
        return candidate

    def _index(self, base: str) -> Response:
        html = (self.dist / "index.html").read_text(encoding="utf-8")
        html = html.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{base}"')
        html = html.replace('href="/', f'href="{base}').replace('src="/', f'src="{base}')
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-cache"})

    def _base(self, request: Request) -> str:
        """The viewer's path as the browser sees it (X-Forwarded-Prefix honoured), with "/"."""
        prefix = request.headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
        return f"{prefix}{self.mount_path}/"

    def _same_origin_root(self, request: Request) -> str:
        prefix = request.headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
        return f"{origin(request)}{prefix}{self.dicomweb_path}"


@functools.lru_cache(maxsize=32)
def _rewritten(path: str, mtime_ns: int, base: str) -> bytes | None:
    """The file with its absolute "/" asset paths moved under `base`, or None if it has none."""
    data = Path(path).read_bytes()
    if path.endswith(".css"):
        if b"url(/" not in data:
            return None
        return data.replace(b"url(/", b"url(" + base.encode())
    if _WEBPACK_PUBLIC_PATH not in data:
        return None
    return data.replace(_WEBPACK_PUBLIC_PATH, b'__webpack_require__.p = "' + base.encode() + b'"')


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="serve a prebuilt OHIF viewer on its own")
    parser.add_argument("dist", type=Path, help="OHIF dist/ folder (or the @ohif/app package)")
    parser.add_argument("--dicomweb-root", required=True, help="the DICOMweb root URL to use")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--path", default=DEFAULT_VIEWER_PATH, help="where to serve it")
    args = parser.parse_args(argv)
    viewer = Viewer(args.dist, args.path, dicomweb_root=args.dicomweb_root)
    uvicorn.run(
        Starlette(routes=viewer.routes()), host=args.host, port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()

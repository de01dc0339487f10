"""The `tessera` command line: serve, upload, sources, sweep, migrate (and the layers' own:
scp, peers, admin, orders)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tessera import __version__
from tessera.cli_common import add_store_flags, open_archive, open_for_command, settings_from
from tessera.config import export_settings
from tessera.log import configure_logging

if TYPE_CHECKING:
    from tessera.archive import Archive

log = logging.getLogger("tessera")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tessera.services.sweep import sweep_orphans

    settings = settings_from(args)
    if getattr(args, "workers", None):
        settings = dataclasses.replace(settings, workers=args.workers)
    configure_logging(settings.log_level, settings.log_format)
    scheme = "https" if settings.http_tls_cert else "http"
    if settings.viewer:
        from tessera.dicomweb.viewer import find_dist
        from tessera.dicomweb.viewer_install import viewer_folder

        try:
            find_dist(viewer_folder(settings.viewer))
        except ValueError as exc:
            print(f"error: --viewer: {exc}", file=sys.stderr)
            return 2
        log.info(
            "serving the OHIF viewer",
            extra={"url": f"{scheme}://{settings.host}:{settings.port}/viewer/"},
        )
    from tessera.dicomweb.access import announce_access_mode

    announce_access_mode(settings)
    # Migrate and sweep once here, before any worker starts: workers never race on the
    # schema, and no upload of this server is in flight while its orphans are swept.
    archive = open_archive(settings, migrate=True)
    sweep_orphans(archive, settings.orphan_grace_seconds)
    if settings.sweep_interval_seconds > 0:
        threading.Thread(target=_sweep_periodically, args=(archive,), daemon=True).start()
    if settings.hl7_results_endpoint:
        from tessera.services.report_results import parse_endpoint, start_sender

        try:
            parse_endpoint(settings.hl7_results_endpoint)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # One sender per server (in this supervisor process), like the sweeper.
        start_sender(archive)

    from tessera.services.study_complete import start_worker

    # Study complete -> IMAGES_READY (docs/orders.md): one worker in this supervisor process;
    # several servers over one PostgreSQL index share the work (rows are claimed).
    stop_study_complete = start_worker(archive)
    listener = None
    if settings.dimse_port > 0:
        # The DIMSE listener runs in this (supervisor) process, in its own threads.
        from tessera.scp.server import start_listener

        try:
            listener = start_listener(archive)
        except OSError as exc:
            log.error("cannot listen on DIMSE port %s: %s", settings.dimse_port, exc)
            return 1
    from tessera.dicomweb.https import uvicorn_tls_options

    try:
        tls_options = uvicorn_tls_options(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(f"error: HTTPS: {exc}", file=sys.stderr)
        return 2
    hl7_listener = None
    if settings.hl7_listen_port > 0:
        # Orders in over HL7 v2 (one listener per deployment), in this supervisor process.
        from tessera.hl7.listener import start_listener as start_hl7_listener

        try:
            hl7_listener = start_hl7_listener(archive)
        except OSError as exc:
            log.error("cannot listen on HL7 port %s: %s", settings.hl7_listen_port, exc)
            return 1
    # Workers rebuild the same settings from the environment.
    export_settings(settings)
    # In one process, uvicorn re-raises the SIGTERM that stopped it once it has shut down:
    # the default action would end the process before the DIMSE listener and the archive are
    # closed below (and exit -15). This handler turns it (or one before uvicorn's own is in
    # place) into a clean exit through `finally`.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            "tessera.dicomweb.app:app_from_environment",
            factory=True,
            http="tessera.dicomweb.http_protocol:ArchiveHttpProtocol",
            # UPS notification channels send SCP Status Change (GOING DOWN) before closing.
            ws="tessera.dicomweb.going_down:GoingDownProtocol",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            timeout_keep_alive=30,
            # uvicorn kills (and restarts) a worker that misses a 5 s health ping, dropping its
            # requests in flight: a worker busy transcoding, or starting on a loaded machine,
            # is not hung. 30 s still replaces a truly hung one.
            timeout_worker_healthcheck=30,
            **tls_options,
        )
    finally:
        # uvicorn returns on SIGTERM / Ctrl-C; the DIMSE listener's threads would otherwise
        # keep this process alive after the HTTP side has stopped.
        stop_study_complete.set()
        if hl7_listener is not None:
            hl7_listener.shutdown()
        if listener is not None:
            listener.shutdown()
            log.info("DIMSE listener stopped")
        archive.close()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _sweep_periodically(archive: Archive) -> None:
    from tessera.services.sweep import sweep_orphans

    while True:
        time.sleep(archive.settings.sweep_interval_seconds)
        try:
            sweep_orphans(archive, archive.settings.orphan_grace_seconds)
        except Exception:
            log.exception("sweep failed")


def cmd_upload(args: argparse.Namespace) -> int:
    from tessera.client.stow import upload_paths

    if args.document is not None:
        from tessera.client.document import upload_document

        if not args.study or args.paths or args.session:
            print(
                "error: --document FILE needs --study UID, and takes no other files or --session",
                file=sys.stderr,
            )
            return 2
        return upload_document(
            Path(args.document),
            args.url,
            args.study,
            title=args.title,
            source=args.source,
            token=args.token,
            username=args.username,
            password=args.password,
        )
    url = args.url
    if args.session:  # STOW-RS into an upload session (docs/upload-sessions.md)
        url = f"{url.rstrip('/')}/upload-sessions/{args.session}"
    if args.watch is not None:
        return _watch(args, url)
    if not args.paths:
        print("error: name the files or folders to upload", file=sys.stderr)
        return 2
    return upload_paths(
        [Path(p) for p in args.paths],
        url=url,
        source=args.source,
        order=args.order,
        parallel=args.parallel,
        batch_files=args.batch_files,
        batch_bytes=args.batch_mb * 1024 * 1024,
        token=args.token,
        username=args.username,
        password=args.password,
        progress=not args.no_progress,
    )


def _watch(args: argparse.Namespace, url: str) -> int:
    """`tessera upload --watch FOLDER`: the background uploader (tessera/client/watch.py)."""
    import httpx

    from tessera.client.watch import WatchConfig, watch

    if args.paths:
        print("error: --watch FOLDER takes no other files or folders", file=sys.stderr)
        return 2
    params = {k: v for k, v in (("source", args.source), ("order", args.order)) if v}
    config = WatchConfig(
        folder=Path(args.watch),
        url=url,
        state_path=Path(args.state) if args.state else None,
        settle=args.settle,
        poll=args.poll,
        max_backoff=args.max_backoff,
        batch_files=args.batch_files,
        move_to=Path(args.move_to) if args.move_to else None,
        params=params,
        headers={"Authorization": f"Bearer {args.token}"} if args.token else {},
        auth=httpx.BasicAuth(args.username, args.password or "") if args.username else None,
    )
    return watch(config)


def cmd_sources(args: argparse.Namespace) -> int:
    from tessera.index.sources import add_source, list_sources

    archive = open_for_command(args)
    tenant_id = archive.default_tenant.id
    if args.action == "add":
        try:
            with archive.database.write() as conn:
                add_source(conn, tenant_id, args.name, args.description or "")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # unique violation
            print(
                f"error: source {args.name!r} could not be added ({exc.__class__.__name__})",
                file=sys.stderr,
            )
            return 1
        print(f"source {args.name} added")
    else:
        with archive.database.read() as conn:
            for name, description in list_sources(conn, tenant_id):
                print(f"{name}\t{description}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tessera.services.sweep import sweep_orphans

    archive = open_for_command(args)
    report = sweep_orphans(archive, args.grace_seconds)
    print(
        f"spool files removed: {report.spool_files_removed}; blobs checked: {report.blobs_checked}; "
        f"orphan blobs removed: {report.orphan_blobs_removed}"
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    archive = open_for_command(args, migrate=True)
    try:
        url = archive.database.url.render_as_string(hide_password=True)
        print(f"index at {url} is up to date")
    finally:
        archive.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera DICOMweb archive")
    parser.add_argument("--version", action="version", version=f"tessera {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (DICOMweb root at /dicomweb)")
    serve.add_argument("--host", help="address to listen on (TESSERA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (TESSERA_PORT, default 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        help="HTTP worker processes (TESSERA_WORKERS, default: one per core, at most 4)",
    )
    from tessera.scp.cli import add_dimse_flags

    add_dimse_flags(serve)
    serve.add_argument(
        "--viewer",
        metavar="PATH",
        nargs="?",
        const="installed",
        help="serve this prebuilt OHIF viewer (dist/ of @ohif/app) at /viewer/; without "
        "PATH, the one `tessera viewer install` fetched (TESSERA_VIEWER, or =installed)",
    )
    add_store_flags(serve)
    serve.set_defaults(func=cmd_serve)

    upload = sub.add_parser("upload", help="send DICOM files or folders over STOW-RS")
    upload.add_argument("paths", nargs="*", help="files or folders (searched recursively)")
    upload.add_argument("--url", default="http://127.0.0.1:8080/dicomweb", help="DICOMweb root")
    upload.add_argument("--source", help="source label for the uploaded studies")
    upload.add_argument(
        "--order", help="ID of the order the files are for (their study becomes the order's)"
    )
    upload.add_argument("--parallel", type=int, default=4, help="requests in flight (default 4)")
    upload.add_argument(
        "--batch-files", type=int, default=32, help="files per request (default 32)"
    )
    upload.add_argument("--batch-mb", type=int, default=64, help="MB per request (default 64)")
    upload.add_argument("--token", help="bearer token or API key (Authorization: Bearer)")
    upload.add_argument("--username", help="HTTP Basic user name")
    upload.add_argument("--password", help="HTTP Basic password")
    upload.add_argument("--no-progress", action="store_true", help="no progress bar")
    upload.add_argument(
        "--document", help="a PDF, photo, text, office file or MP4 to attach to --study"
    )
    upload.add_argument("--study", help="StudyInstanceUID the --document is attached to")
    upload.add_argument("--title", help="the document's title (default: its file name)")
    upload.add_argument(
        "--session", help="upload into this upload session (committed later, see docs)"
    )
    upload.add_argument(
        "--watch",
        metavar="FOLDER",
        help="keep running: upload complete files as they appear in FOLDER (docs/stow.md)",
    )
    upload.add_argument(
        "--state", help="--watch: the state file (default FOLDER/.tessera-upload.json)"
    )
    upload.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="--watch: seconds a file's size and mtime must stand still (default 5)",
    )
    upload.add_argument(
        "--poll", type=float, default=2.0, help="--watch: seconds between looks (default 2)"
    )
    upload.add_argument(
        "--max-backoff",
        type=float,
        default=60.0,
        help="--watch: longest wait between retries while the server is away (default 60)",
    )
    upload.add_argument("--move-to", help="--watch: move stored files here (default: leave them)")
    upload.set_defaults(func=cmd_upload)

    sources = sub.add_parser("sources", help="list or add upload sources of the default tenant")
    sources.add_argument("action", choices=["list", "add"])
    sources.add_argument("name", nargs="?", help="source name (no spaces)")
    sources.add_argument("--description", help="what the source is")
    add_store_flags(sources)
    sources.set_defaults(func=cmd_sources)

    sweep = sub.add_parser("sweep", help="remove orphan files left by interrupted uploads")
    sweep.add_argument(
        "--grace-seconds", type=float, default=600, help="only files older than this"
    )
    add_store_flags(sweep)
    sweep.set_defaults(func=cmd_sweep)

    migrate = sub.add_parser("migrate", help="bring the index schema up to date")
    add_store_flags(migrate)
    migrate.set_defaults(func=cmd_migrate)

    # Layers add their own subcommands (e.g. `tessera scp`, `tessera peers`, `tessera admin`).
    for module_name in _SUBCOMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(sub)
    return parser


_SUBCOMMAND_MODULES = (
    "tessera.scp.cli",
    "tessera.auth.cli",
    "tessera.services.events_cli",
    "tessera.services.reports_cli",
    "tessera.services.orders_cli",
    "tessera.hl7.cli",
    "tessera.dicomweb.viewer_install",
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sources" and args.action == "add" and not args.name:
        parser.error("sources add needs a NAME")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""`tessera scp` (the DIMSE listener alone), `tessera peers` and `tessera ae-titles`."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import Connection

from tessera.cli_common import add_store_flags, open_archive, open_for_command, settings_from
from tessera.log import configure_logging


def register(sub: argparse._SubParsersAction) -> None:
    scp = sub.add_parser(
        "scp", help="run the DIMSE listener alone (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)"
    )
    scp.add_argument("--host", help="address to listen on (TESSERA_HOST, default 127.0.0.1)")
    add_dimse_flags(scp)
    add_store_flags(scp)
    scp.set_defaults(func=cmd_scp)

    peers = sub.add_parser("peers", help="list, add or remove the DIMSE peers of a tenant")
    peers.add_argument("action", choices=["list", "add", "remove"])
    peers.add_argument("ae_title", nargs="?", help="the peer's AE title (its calling AE title)")
    peers.add_argument("--host", dest="peer_host", help="the peer's address (C-MOVE target)")
    peers.add_argument(
        "--port",
        dest="peer_port",
        type=int,
        help="the peer's Storage SCP port (0: it cannot be a C-MOVE destination)",
    )
    peers.add_argument("--tenant", default="default", help="tenant name (default: default)")
    peers.add_argument(
        "--source", help="source its C-STOREs are labelled with (default: the tenant's default)"
    )
    peers.add_argument(
        "--query-sources",
        help="comma-separated sources it may query and retrieve (default: all)",
    )
    peers.add_argument("--no-store", action="store_true", help="may not C-STORE into the archive")
    peers.add_argument("--no-query", action="store_true", help="may not C-FIND/C-MOVE/C-GET")
    peers.add_argument("--no-move-destination", action="store_true", help="never a C-MOVE target")
    peers.add_argument(
        "--staged",
        action="store_true",
        help="its C-STOREs go into upload sessions a user commits or discards (reviewed)",
    )
    peers.add_argument("--description", default="", help="what the peer is")
    add_store_flags(peers)
    peers.set_defaults(func=cmd_peers)

    titles = sub.add_parser("ae-titles", help="list, add or remove the archive's AE titles")
    titles.add_argument("action", choices=["list", "add", "remove"])
    titles.add_argument("ae_title", nargs="?", help="AE title that selects the tenant")
    titles.add_argument("--tenant", default="default", help="tenant name (default: default)")
    add_store_flags(titles)
    titles.set_defaults(func=cmd_ae_titles)


def add_dimse_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dimse-port",
        type=int,
        help="DIMSE port (TESSERA_DIMSE_PORT, default 11112; 0 turns the listener off)",
    )
    parser.add_argument(
        "--dimse-aet", help="AE title of the default tenant (TESSERA_DIMSE_AET, default TESSERA)"
    )


def cmd_scp(args: argparse.Namespace) -> int:
    from tessera.scp.server import start_listener

    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format)
    if settings.dimse_port <= 0:
        print("error: --dimse-port must be a port number", file=sys.stderr)
        return 2
    archive = open_archive(settings, migrate=True)
    from tessera.services.study_complete import start_worker

    # Study complete -> IMAGES_READY: every process may run it (rows are claimed).
    start_worker(archive)
    try:
        start_listener(archive, block=True)
    except OSError as exc:
        print(f"error: cannot listen on DIMSE port {settings.dimse_port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        archive.close()  # flushes the DIMSE audit log
    return 0


def _tenant_id(conn: Connection, name: str) -> int:
    from tessera.index.peers import PeerError
    from tessera.index.tenancy import tenant_by_name

    tenant = tenant_by_name(conn, name)
    if tenant is None:
        raise PeerError(f"unknown tenant {name!r}")
    return tenant.id


def cmd_peers(args: argparse.Namespace) -> int:
    from tessera.index import peers

    archive = open_for_command(args)
    try:
        if args.action == "list":
            with archive.database.read() as conn:
                for peer in peers.list_peers(conn, _tenant_id(conn, args.tenant)):
                    print(
                        "\t".join(
                            [
                                peer.ae_title,
                                f"{peer.host}:{peer.port}",
                                f"source={peer.upload_source or 'default'}",
                                "query=" + (",".join(peer.query_sources) or "*"),
                                "store" if peer.may_store else "no-store",
                                "query" if peer.may_query else "no-query",
                                "move-destination"
                                if peer.may_be_move_destination and peer.port
                                else "no-move-destination",
                                "staged" if peer.staged else "direct",
                                peer.description,
                            ]
                        )
                    )
            return 0
        if not args.ae_title:
            print(f"error: peers {args.action} needs an AE title", file=sys.stderr)
            return 2
        if args.action == "remove":
            with archive.database.write() as conn:
                removed = peers.remove_peer(conn, _tenant_id(conn, args.tenant), args.ae_title)
            if not removed:
                print(f"error: no peer {args.ae_title!r}", file=sys.stderr)
                return 1
            print(f"peer {args.ae_title} removed")
            return 0
        if args.peer_host is None or args.peer_port is None:
            print("error: peers add needs --host and --port", file=sys.stderr)
            return 2
        query_sources = [s.strip() for s in (args.query_sources or "").split(",") if s.strip()]
        with archive.database.write() as conn:
            peers.add_peer(
                conn,
                _tenant_id(conn, args.tenant),
                args.ae_title,
                args.peer_host,
                args.peer_port,
                upload_source=args.source,
                query_sources=query_sources,
                may_store=not args.no_store,
                may_query=not args.no_query,
                may_be_move_destination=not args.no_move_destination,
                description=args.description,
                staged=args.staged,
            )
        print(f"peer {args.ae_title.strip()} added")
        return 0
    except peers.PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        archive.close()


def cmd_ae_titles(args: argparse.Namespace) -> int:
    from tessera.index import peers

    archive = open_for_command(args)
    try:
        if args.action == "list":
            with archive.database.read() as conn:
                registered = peers.list_ae_titles(conn)
            configured = archive.settings.dimse_aet
            if all(title != configured for title, _ in registered):
                print(f"{configured}\t{archive.default_tenant.name}\t(TESSERA_DIMSE_AET)")
            for title, tenant in registered:
                print(f"{title}\t{tenant}")
            return 0
        if not args.ae_title:
            print(f"error: ae-titles {args.action} needs an AE title", file=sys.stderr)
            return 2
        with archive.database.write() as conn:
            tenant_id = _tenant_id(conn, args.tenant)
            if args.action == "add":
                peers.add_ae_title(conn, tenant_id, args.ae_title)
                print(f"AE title {args.ae_title.strip()} added")
            elif not peers.remove_ae_title(conn, tenant_id, args.ae_title):
                print(f"error: no AE title {args.ae_title!r} in {args.tenant}", file=sys.stderr)
                return 1
            else:
                print(f"AE title {args.ae_title.strip()} removed")
        return 0
    except peers.PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        archive.close()

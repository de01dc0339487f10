"""Send a batch of one rule's instances to its destination: STOW-RS (one request) or C-STORE
(one association). Blocking; the delivery worker runs it in a thread.

Instances are resolved through the scoped query engine with the rule's Scope (its tenant and
sources), so a rule can never send what it may not. C-STORE proposes each SOP class in its
stored transfer syntax and in the native ones, and transcodes to what the peer accepts
(the same code as C-MOVE / C-GET sub-operations). Both destinations treat a resent instance
they already hold as success (Tessera answers it as identical), so resends are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import BinaryIO

import httpx
from pynetdicom import AE

from tessera.archive import Archive
from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.dicomweb.media_type import DICOM
from tessera.dicomweb.wado_instances import CHUNK, transcoded_file
from tessera.index.retrieve import RetrievedInstance, resolve_uid_lists
from tessera.index.routes import Rule
from tessera.scp.outgoing import (
    accepted_pairs,
    proposed_contexts,
    release,
    send_files_from_disk,
    sendable,
    tighten,
)
from tessera.scp.transport import disable_nagle
from tessera.services.outbound import TargetRefused, pinned_request, resolve_checked

log = logging.getLogger(__name__)

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007}
STOW_TIMEOUT_SECONDS = 120.0


def send_batch(archive: Archive, rule: Rule, sop_instance_uids: list[str]) -> dict[str, str]:
    """SOP Instance UID -> error ('' when the destination took it)."""
    with archive.database.read() as conn:
        instances = resolve_uid_lists(conn, rule.scope(), sop_instance_uids=sop_instance_uids)
    outcome = {
        uid: "no longer in the archive (or outside the rule's sources)" for uid in sop_instance_uids
    }
    if not instances:
        return outcome
    allow_private = archive.settings.outbound_allow_private
    try:
        if rule.destination_kind == "dicomweb":
            outcome.update(_stow(archive, rule, instances, allow_private))
        else:
            outcome.update(_c_store(archive, rule, instances, allow_private))
    except TargetRefused as exc:
        outcome.update({i.sop_instance_uid: f"refused: {exc}" for i in instances})
    return outcome


def _stow(
    archive: Archive, rule: Rule, instances: list[RetrievedInstance], allow_private: bool
) -> dict[str, str]:
    with ExitStack() as cleanup:
        parts = [_part(archive, instance, cleanup) for instance in instances]
        return _post_parts(rule, instances, parts, allow_private)


# A part's payload: how to open it, and its length (the request states its whole length:
# some archives refuse a chunked request body).
Part = tuple[Callable[[], BinaryIO], int]


def _part(archive: Archive, instance: RetrievedInstance, cleanup: ExitStack) -> Part:
    """The stored file as it is, or, with corrected patient attributes (identity changes; they
    go out too, as for C-STORE), a spool file written frame by frame: never whole in memory."""
    store = archive.blob_store
    if not instance.coercion:
        return partial(store.open, instance.blob_key), instance.size_bytes
    path = transcoded_file(store, instance, instance.transfer_syntax_uid, archive.spool_dir)
    cleanup.callback(path.unlink, missing_ok=True)
    return (lambda: path.open("rb")), path.stat().st_size


def _multipart(boundary: str, head: bytes, parts: list[Part]) -> Iterator[bytes]:
    for opener, _ in parts:
        yield head
        with opener() as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        yield multipart_writer.PART_END
    yield multipart_writer.closing(boundary)


def _post_parts(
    rule: Rule, instances: list[RetrievedInstance], parts: list[Part], allow_private: bool
) -> dict[str, str]:
    boundary = multipart_writer.new_boundary()
    head = multipart_writer.part_header(boundary, DICOM)
    length = multipart_writer.body_length(boundary, [(head, size) for _, size in parts])
    target = pinned_request(rule.destination_url.rstrip("/") + "/studies", allow_private)
    headers = {
        "host": target.host_header,
        "content-type": request_content_type(boundary),
        "content-length": str(length),
        "accept": "application/dicom+json",
    }
    if rule.destination_authorization:
        headers["authorization"] = rule.destination_authorization
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    uids = [i.sop_instance_uid for i in instances]
    try:
        with httpx.Client(timeout=STOW_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.post(
                target.url,
                content=_multipart(boundary, head, parts),
                headers=headers,
                extensions=extensions,
            )
    except httpx.TimeoutException:
        return dict.fromkeys(uids, "STOW-RS timed out")
    except httpx.HTTPError as exc:
        return dict.fromkeys(uids, f"STOW-RS failed: {type(exc).__name__}: {exc}"[:300])
    if response.status_code == 200:
        return dict.fromkeys(uids, "")
    if response.status_code not in (202, 409):
        return dict.fromkeys(uids, f"STOW-RS answered {response.status_code}")
    result = dict.fromkeys(uids, "")
    try:
        failed = response.json().get(FAILED_SOP_SEQUENCE, {}).get("Value", [])
    except ValueError:
        return dict.fromkeys(uids, f"STOW-RS answered {response.status_code} without a body")
    for item in failed:
        uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [""])[0]
        reason = (item.get(FAILURE_REASON, {}).get("Value") or [0])[0]
        if uid in result:
            result[uid] = f"STOW-RS failure reason {reason:#06x}"
    return result


def _c_store(
    archive: Archive, rule: Rule, instances: list[RetrievedInstance], allow_private: bool
) -> dict[str, str]:
    address = resolve_checked(rule.host, rule.port, allow_private)
    uids = [i.sop_instance_uid for i in instances]
    ae = AE(ae_title=rule.calling_ae_title or "TESSERA")
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    ae.requested_contexts = proposed_contexts(instances)
    assoc = ae.associate(address, rule.port, ae_title=rule.ae_title)
    if not assoc.is_established:
        return dict.fromkeys(uids, f"association with {rule.ae_title} not established")
    result: dict[str, str] = {}
    tighten(assoc)
    disable_nagle(assoc)
    send_files_from_disk(assoc)
    try:
        accepted = accepted_pairs(assoc, as_scu=False)
        for instance in instances:
            if not assoc.is_established:
                result[instance.sop_instance_uid] = "association lost"
                continue
            dataset = None
            try:
                dataset = sendable(archive, instance, accepted)
                status = assoc.send_c_store(dataset)
            except Exception as exc:  # no accepted context, unreadable file
                result[instance.sop_instance_uid] = f"C-STORE not sent: {exc}"[:300]
                continue
            finally:
                release(dataset)
            code = getattr(status, "Status", None)
            result[instance.sop_instance_uid] = (
                "" if code in STORE_OK else f"C-STORE status {code if code is None else hex(code)}"
            )
    finally:
        if assoc.is_established:
            assoc.release()
    return result

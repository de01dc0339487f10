"""The permission vocabulary every facade checks (`Scope.can`), in one place.

Roles are named sets of these; the accounts work maps admin, technologist, referring and
reading physician (and custom roles) onto them.
"""

from __future__ import annotations

# Search and retrieve images, metadata, rendered images (QIDO-RS, WADO-RS/URI, C-FIND,
# C-MOVE, C-GET).
READ = "read"
# Store instances (STOW-RS, C-STORE, tessera upload).
UPLOAD = "upload"
# Orders (scheduled procedures), worklist.
ORDERS = "orders"
# Draft and sign reports.
REPORT_WRITE = "report.write"
REPORT_SIGN = "report.sign"
# Link and unlink patient identities, see link candidates and history (docs/identity.md).
IDENTITY = "identity"
# Manage the account: users, roles, sources, API keys, peers, policies; read the audit trail.
ADMIN = "admin"
# Everything, in every tenant (the system administrator).
SYSTEM = "system"

ALL = frozenset({READ, UPLOAD, ORDERS, REPORT_WRITE, REPORT_SIGN, IDENTITY, ADMIN})


class PermissionDenied(Exception):
    """The caller's Scope lacks a permission; facades answer 403 (DICOMweb) or a refused
    status (DIMSE)."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this operation needs the '{permission}' permission")
        self.permission = permission

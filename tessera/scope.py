"""A Scope is what a caller may see and do: its tenant, and the sources it is limited to.

`tessera.auth` produces it from credentials (or a DIMSE calling AE title); `tessera.index`
applies it inside every SQL query. Facades never filter results themselves. It lives at the
top of the package so both import it without one depending on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    tenant_id: int
    # None: every source of the tenant. Otherwise only instances from these source keys.
    source_pks: frozenset[int] | None = None
    # Sources this caller may label uploads with (None: any of the tenant's sources).
    upload_source_pks: frozenset[int] | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    # Who is acting, for logs and the audit trail.
    principal: str = "anonymous"

    def can(self, permission: str) -> bool:
        return "*" in self.permissions or permission in self.permissions

    def may_upload_to(self, source_pk: int) -> bool:
        return self.upload_source_pks is None or source_pk in self.upload_source_pks


def full_scope(tenant_id: int, principal: str = "anonymous") -> Scope:
    """Everything in one tenant (the loopback quick start, system tasks)."""
    return Scope(tenant_id=tenant_id, permissions=frozenset({"*"}), principal=principal)

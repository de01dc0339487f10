"""The Archive: settings, the SQL index and the blob store, opened once per process and
shared by the DICOMweb and DIMSE facades."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tessera.config import Settings
from tessera.index.database import Database
from tessera.index.migrate import upgrade_to_head
from tessera.index.tenancy import TenantInfo, ensure_default_tenant
from tessera.storage.blobstore import BlobStore, open_blob_store

log = logging.getLogger(__name__)


@dataclass
class Archive:
    settings: Settings
    database: Database
    blob_store: BlobStore
    default_tenant: TenantInfo

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> Archive:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.resolved_database_url)
        if migrate:
            upgrade_to_head(database.engine)
        with database.write() as conn:
            tenant = ensure_default_tenant(conn)
        store = open_blob_store(settings)
        log.info(
            "archive opened",
            extra={
                "data_dir": str(settings.data_dir.resolve()),
                "blob_store": str(getattr(store, "root", store)),
                "database": database.url.render_as_string(hide_password=True),
            },
        )
        return cls(settings, database, store, tenant)

    @property
    def spool_dir(self):  # type: ignore[no-untyped-def]
        return self.settings.spool_dir

    def close(self) -> None:
        self.database.dispose()

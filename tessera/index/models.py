"""The SQL index: tenants, sources, and the patient / study / series / instance hierarchy.

Every row carries its tenant; instances carry their source. Attributes that QIDO-RS and
C-FIND match on are typed, indexed columns (dates as dates, times as times; person names
also in a normalized form for case-insensitive matching, see `attributes.normalize_person_name`).
The instance's DICOM JSON and frame offsets live in a separate table so the instance table
stays narrow for queries.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets 64-bit keys.
Key = BigInteger().with_variant(Integer(), "sqlite")

DEFAULT_TENANT = "default"
DEFAULT_SOURCE = "default"


class Base(DeclarativeBase):
    # Every model here is mapped to a Table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class Tenant(Base):
    __tablename__ = "tenant"
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # What a different object under an existing SOP Instance UID does: 'reject' or 'overwrite'.
    duplicate_policy: Mapped[str] = mapped_column(String(16), default="reject")
    # 0010: a Patient ID search also returns the studies of linked identities (docs/identity.md).
    linked_matching: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Source(Base):
    __tablename__ = "source"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(256), default="")
    # 0010: the Issuer of Patient ID of this source's instances that carry none ('' = none).
    default_issuer_of_patient_id: Mapped[str] = mapped_column(String(64), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        UniqueConstraint("tenant_id", "patient_id", "issuer_of_patient_id"),
        Index("ix_patient_name_norm", "tenant_id", "patient_name_norm"),
        Index("ix_patient_person", "tenant_id", "person_pk"),
        Index("ix_patient_patient_id", "tenant_id", "patient_id"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    # '' rather than NULL, so the unique constraint holds for patients without an issuer.
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str | None] = mapped_column(String(324))
    patient_name_norm: Mapped[str | None] = mapped_column(String(324))
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    # 0010: the person (master patient) of a linked identity: the lowest patient id of its
    # linked group (tessera.index.links); NULL while the identity is linked to nothing.
    person_pk: Mapped[int | None] = mapped_column(Key)
    # 0014: the identity this one was merged into (HL7 A40; tessera.index.identity_changes);
    # NULL while it is a live identity. A merged identity keeps its row for history.
    merged_into_pk: Mapped[int | None] = mapped_column(Key)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Study(Base):
    __tablename__ = "study"
    __table_args__ = (
        UniqueConstraint("tenant_id", "study_instance_uid"),
        Index("ix_study_date", "tenant_id", "study_date", "study_time"),
        Index("ix_study_patient_name_norm", "tenant_id", "patient_name_norm"),
        Index("ix_study_patient_id", "tenant_id", "patient_id"),
        Index("ix_study_accession_number", "tenant_id", "accession_number"),
        Index("ix_study_created_at", "tenant_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    study_date: Mapped[date | None] = mapped_column(Date)
    study_time: Mapped[time | None] = mapped_column(Time)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(String(1024))
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    referring_physician_name_norm: Mapped[str | None] = mapped_column(String(324))
    # Patient attributes as this study carries them (matching without a join).
    patient_name: Mapped[str | None] = mapped_column(String(324))
    patient_name_norm: Mapped[str | None] = mapped_column(String(324))
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    specific_character_set: Mapped[str | None] = mapped_column(String(256))
    timezone_offset_from_utc: Mapped[str | None] = mapped_column(String(16))
    # Computed attributes, kept current by ingest: backslash-separated sorted values.
    modalities_in_study: Mapped[str] = mapped_column(String(256), default="")
    sop_classes_in_study: Mapped[str] = mapped_column(Text, default="")
    number_of_study_related_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_study_related_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("tenant_id", "series_instance_uid"),
        Index("ix_series_study", "study_pk", "series_number"),
        Index("ix_series_modality", "tenant_id", "modality"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(1024))
    series_date: Mapped[date | None] = mapped_column(Date)
    series_time: Mapped[time | None] = mapped_column(Time)
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    performed_procedure_step_start_date: Mapped[date | None] = mapped_column(Date)
    performed_procedure_step_start_time: Mapped[time | None] = mapped_column(Time)
    number_of_series_related_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sop_instance_uid"),
        Index("ix_instance_series", "series_pk", "instance_number"),
        Index("ix_instance_study_source", "study_pk", "source_pk"),
        # 0002: source-locked series searches (EXISTS / counts of visible instances).
        Index("ix_instance_series_source", "series_pk", "source_pk"),
        Index("ix_instance_blob_key", "blob_key"),
        Index("ix_instance_created_at", "tenant_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    content_date: Mapped[date | None] = mapped_column(Date)
    content_time: Mapped[time | None] = mapped_column(Time)
    # 0002: a QIDO-RS instance default attribute, and a datetime matching key.
    bits_allocated: Mapped[int | None] = mapped_column(Integer)
    acquisition_datetime: Mapped[datetime | None] = mapped_column(DateTime)
    blob_key: Mapped[str] = mapped_column(String(160))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StudySource(Base):
    """A study's attributes as one source's instances carry them (0005).

    The study row keeps the values of the study's first upload, which may come from a
    source a locked caller cannot see; this row keeps the values of the first upload of
    each source into the study. A source-locked query reads its values from these rows
    (the earliest row of a visible source), so nothing it shows or matches on comes from a
    hidden source. The row exists exactly while the study holds an instance of the source.
    """

    __tablename__ = "study_source"
    __table_args__ = (
        UniqueConstraint("study_pk", "source_pk"),
        Index("ix_study_source_date", "tenant_id", "study_date", "study_time"),
        Index("ix_study_source_patient_name_norm", "tenant_id", "patient_name_norm"),
        Index("ix_study_source_patient_id", "tenant_id", "patient_id"),
        Index("ix_study_source_accession_number", "tenant_id", "accession_number"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    # The study's value columns, named as on the study table (STUDY_VALUE_COLUMNS).
    study_date: Mapped[date | None] = mapped_column(Date)
    study_time: Mapped[time | None] = mapped_column(Time)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(String(1024))
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    referring_physician_name_norm: Mapped[str | None] = mapped_column(String(324))
    patient_name: Mapped[str | None] = mapped_column(String(324))
    patient_name_norm: Mapped[str | None] = mapped_column(String(324))
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    specific_character_set: Mapped[str | None] = mapped_column(String(256))
    timezone_offset_from_utc: Mapped[str | None] = mapped_column(String(16))


class SeriesSource(Base):
    """A series' attributes as one source's instances carry them (0005); see StudySource."""

    __tablename__ = "series_source"
    __table_args__ = (
        UniqueConstraint("series_pk", "source_pk"),
        Index("ix_series_source_study", "study_pk", "source_pk"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    # The series' value columns, named as on the series table (SERIES_VALUE_COLUMNS).
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(1024))
    series_date: Mapped[date | None] = mapped_column(Date)
    series_time: Mapped[time | None] = mapped_column(Time)
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    performed_procedure_step_start_date: Mapped[date | None] = mapped_column(Date)
    performed_procedure_step_start_time: Mapped[time | None] = mapped_column(Time)


# The columns a study / series row and its per-source rows share (written from one header).
STUDY_VALUE_COLUMNS: tuple[str, ...] = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "study_description",
    "referring_physician_name",
    "referring_physician_name_norm",
    "patient_name",
    "patient_name_norm",
    "patient_id",
    "issuer_of_patient_id",
    "patient_birth_date",
    "patient_sex",
    "specific_character_set",
    "timezone_offset_from_utc",
)
SERIES_VALUE_COLUMNS: tuple[str, ...] = (
    "modality",
    "series_number",
    "series_description",
    "series_date",
    "series_time",
    "body_part_examined",
    "performed_procedure_step_start_date",
    "performed_procedure_step_start_time",
)


class InstanceMetadata(Base):
    __tablename__ = "instance_metadata"
    instance_pk: Mapped[int] = mapped_column(
        ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    # DICOM JSON (UTF-8), BulkDataURIs relative to the tenant's DICOMweb root.
    dicom_json: Mapped[bytes] = mapped_column(LargeBinary)
    # JSON list of frames, each a list of [file offset, length] fragments; NULL when the
    # frames cannot be addressed by offset (deflated, bit-packed) or there is no Pixel Data.
    frame_offsets: Mapped[bytes | None] = mapped_column(LargeBinary)
    pixel_data_vr: Mapped[str | None] = mapped_column(String(2))


# 0002 (PostgreSQL only): prefix wildcard (LIKE 'SMI%') needs pattern operator classes unless
# the database collation is C; the study list's order (newest first, undated last) gets an
# index it can read in order. SQLite's GLOB uses the plain indexes, and it reads
# ix_study_date backwards (its NULLs sort first, so last when reversed).
Index(
    "ix_study_patient_name_pattern",
    Study.__table__.c.tenant_id,
    Study.__table__.c.patient_name_norm,
    postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_patient_name_pattern",
    Patient.__table__.c.tenant_id,
    Patient.__table__.c.patient_name_norm,
    postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_patient_id_pattern",
    Study.__table__.c.tenant_id,
    Study.__table__.c.patient_id,
    postgresql_ops={"patient_id": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_accession_number_pattern",
    Study.__table__.c.tenant_id,
    Study.__table__.c.accession_number,
    postgresql_ops={"accession_number": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_source_patient_name_pattern",
    StudySource.__table__.c.tenant_id,
    StudySource.__table__.c.patient_name_norm,
    postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_source_patient_id_pattern",
    StudySource.__table__.c.tenant_id,
    StudySource.__table__.c.patient_id,
    postgresql_ops={"patient_id": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_source_accession_number_pattern",
    StudySource.__table__.c.tenant_id,
    StudySource.__table__.c.accession_number,
    postgresql_ops={"accession_number": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")
Index(
    "ix_study_source_date_desc",
    StudySource.__table__.c.tenant_id,
    StudySource.__table__.c.study_date.desc().nulls_last(),
    StudySource.__table__.c.study_time.desc().nulls_last(),
    StudySource.__table__.c.id.desc(),
).ddl_if(dialect="postgresql")
Index(
    "ix_study_date_desc",
    Study.__table__.c.tenant_id,
    Study.__table__.c.study_date.desc().nulls_last(),
    Study.__table__.c.study_time.desc().nulls_last(),
    Study.__table__.c.id.desc(),
).ddl_if(dialect="postgresql")


class DimseAeTitle(Base):
    """An AE title the DIMSE gateway answers to; the called AE title selects the tenant."""

    __tablename__ = "dimse_ae_title"
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    # Unique across tenants: one called AE title names exactly one tenant.
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DimsePeer(Base):
    """A known remote AE of one tenant: who may associate, where C-MOVE sends to, which
    source its C-STOREs are labelled with and which sources it may query."""

    __tablename__ = "dimse_peer"
    __table_args__ = (UniqueConstraint("tenant_id", "ae_title"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    # 0: the peer has no Storage SCP of its own (it cannot be a C-MOVE destination).
    port: Mapped[int] = mapped_column(Integer)
    # NULL: the tenant's default source.
    upload_source_pk: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    may_store: Mapped[bool] = mapped_column(Boolean, server_default=true())
    may_query: Mapped[bool] = mapped_column(Boolean, server_default=true())
    may_be_move_destination: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # Its C-STOREs go into upload sessions a user commits or discards (a reviewed listener).
    staged: Mapped[bool] = mapped_column(Boolean, server_default=false())
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DimsePeerQuerySource(Base):
    """The sources a peer may query and retrieve; none listed means all of the tenant's."""

    __tablename__ = "dimse_peer_query_source"
    peer_pk: Mapped[int] = mapped_column(
        ForeignKey("dimse_peer.id", ondelete="CASCADE"), primary_key=True
    )
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)


# --- accounts: users, custom roles, per-user source lists, API keys / session tokens, and
# the audit trail (migration 0004). Secrets are never stored: passwords as argon2 hashes,
# tokens as SHA-256 of 256-bit random values (a KDF adds nothing for high-entropy secrets
# and would slow every request).


class AppUser(Base):
    # "user" is reserved in PostgreSQL.
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    username: Mapped[str] = mapped_column(String(64))
    # argon2id hash; NULL: no password login (API keys / OIDC only).
    password_hash: Mapped[str | None] = mapped_column(String(256))
    # A built-in role name (tessera.auth.roles) or a custom role of the tenant.
    role: Mapped[str] = mapped_column(String(64))
    # May manage tenants (the system administrator).
    is_system_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomRole(Base):
    __tablename__ = "custom_role"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str] = mapped_column(String(64))
    # Space-separated permission names (tessera.auth.permissions).
    permissions: Mapped[str] = mapped_column(String(512), default="")
    description: Mapped[str] = mapped_column(String(256), default="")


class UserSource(Base):
    """A user's source list: kind 'read' (what they see; none = all of the tenant) and kind
    'upload' (what they may label uploads with; none = any of the tenant's sources)."""

    __tablename__ = "user_source"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)


class ApiToken(Base):
    """Bearer credentials: long-lived API keys (kind 'api_key') and login sessions
    (kind 'session'). Only the SHA-256 of the secret is kept."""

    __tablename__ = "api_token"
    __table_args__ = (Index("ix_api_token_user", "user_id"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, so a person can recognise a key in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_tenant_at", "tenant_id", "at"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    # NULL: not attributable to a tenant (e.g. a request for an unknown tenant).
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    principal: Mapped[str] = mapped_column(String(160))
    # login, logout, upload, query, retrieve, admin.<object>.<verb>, denied
    action: Mapped[str] = mapped_column(String(64))
    # ok, denied, failed
    outcome: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(512), default="")
    # JSON object with details (never secrets).
    detail: Mapped[str] = mapped_column(Text, default="{}")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")


# Orders, worklist and MPPS tables (migration 0006_orders).
# Change feed, webhooks, routing and notification tables (migration 0008_change_feed).
from tessera.index import event_models as _event_models  # noqa: E402, F401

# Identity tables (0010) live on the same Base, in their own module.
from tessera.index import identity_models as _identity_models  # noqa: E402, F401
from tessera.index import orders as _orders  # noqa: E402, F401

# Reports (report, versions, templates, the HL7 results outbox; migration 0009_reports).
from tessera.index import report_results as _report_results  # noqa: E402, F401
from tessera.index import reports as _reports  # noqa: E402, F401

# Upload sessions live on the same Base, in their own module.
from tessera.index import upload_sessions as _upload_sessions  # noqa: E402, F401

# UPS-RS subscriptions (migration 0015_upssub_ups_subscriptions).
from tessera.index import ups_subscriptions as _ups_subscriptions  # noqa: E402, F401

# Study completion marks and HL7 v2 senders (migration 0012_workflow_hl7).
from tessera.index import workflow_models as _workflow_models  # noqa: E402, F401

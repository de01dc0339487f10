"""Settings: defaults give a working embedded server; TESSERA_* variables and an
optional TOML file (TESSERA_CONFIG) override them; command-line flags override both."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "TESSERA_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    # Empty means "SQLite inside data_dir".
    database_url: str = ""
    # Connections each process keeps open to the index (as many again may open under load).
    # PostgreSQL allows ~100 in all: nodes x workers x 2 x this must stay below that (or
    # put PgBouncer in front; docs/scaling.md).
    database_pool_size: int = 16
    # A STOW-RS request body larger than this is refused with 413.
    max_request_bytes: int = 8 * 1024**3
    # Request headers (all of them, summed) larger than this get 431 and a closed connection;
    # a URL (path + query) longer than this gets 414; more query parameters than this, 400.
    max_header_bytes: int = 32 * 1024
    # 16 KiB: a WADO-RS frame list of 2,000 frames (about 9 KB) fits.
    max_url_bytes: int = 16 * 1024
    max_query_parameters: int = 200
    # A file sent to the documents endpoint larger than this is refused with 413.
    max_document_bytes: int = 512 * 1024**2
    # Upload sessions ("upload later"): open ones expire after this long and are swept
    # with their files; one session holds at most this many bytes (413 beyond).
    upload_session_ttl_seconds: int = 7 * 24 * 3600
    max_session_bytes: int = 64 * 1024**3
    # Orphan blobs and stale temporary files older than this are swept; younger ones may
    # belong to an upload another worker is still indexing.
    orphan_grace_seconds: int = 600
    # How often the sweeper runs while the server is up (0 = only at start).
    sweep_interval_seconds: int = 3600
    log_level: str = "INFO"
    log_format: str = "json"
    # QIDO-RS / C-FIND: most results in one response (more: a Warning header, page on).
    qido_max_results: int = 10_000
    # An instance this large or larger is converted (another transfer syntax, corrected
    # patient attributes) frame by frame into a spool file and sent from a file (C-MOVE,
    # C-GET, routing, a single WADO instance); a smaller one is converted in memory.
    convert_in_memory_max_bytes: int = 32 * 1024**2
    # DIMSE listener (0 disables it in `tessera serve`); the AE title names the default tenant.
    dimse_port: int = 11112
    dimse_aet: str = "TESSERA"
    # Let AEs that are not registered peers associate (read and store in the called tenant).
    dimse_accept_unknown: bool = False
    # More concurrent associations than this are rejected (A-ASSOCIATE-RJ, transient).
    dimse_max_associations: int = 16
    # TLS for the DIMSE listener: both paths set turns it on; with a CA file, peers must
    # present a certificate it signed.
    dimse_tls_cert: str = ""
    dimse_tls_key: str = ""
    dimse_tls_ca: str = ""
    # HTTPS for the HTTP listener, the same way: certificate and key (PEM) turn it on; with a
    # CA file, clients must present a certificate it signed. With TLS on, every response
    # carries Strict-Transport-Security for this many seconds (0: no header).
    http_tls_cert: str = ""
    http_tls_key: str = ""
    http_tls_ca: str = ""
    http_hsts_seconds: int = 365 * 24 * 3600
    # "Study complete" (order -> IMAGES_READY) after this many seconds without a new instance
    # of the order's study; the worker checks every study_complete_interval_seconds (0: off).
    study_complete_quiet_seconds: int = 60
    study_complete_interval_seconds: int = 5
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # A prebuilt OHIF viewer (its dist/ folder, or the @ohif/app package holding it) to serve
    # at /viewer/, pointed at the DICOMweb root; empty = no viewer.
    viewer: str = ""
    # HTTP worker processes; ingest and rendering are CPU bound and Python has one GIL per process.
    workers: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 4)))
    # Anonymous requests: "auto" serves them (full access to the default tenant) only when
    # the server listens on a loopback address; "off" never does (docs/accounts.md).
    anonymous: str = "auto"
    # Lifetime of a bearer token issued by POST /api/v1/login.
    session_ttl_seconds: int = 8 * 3600
    # Lifetime of a read-only viewer token (POST /api/v1/viewer-token, for OHIF's ?token=).
    viewer_token_ttl_seconds: int = 600
    # Optional OpenID Connect: bearer JWTs signed by this issuer's keys are accepted.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_username_claim: str = "preferred_username"
    oidc_tenant_claim: str = "tessera_tenant"
    # Results out: signed reports sent as HL7 v2 ORU^R01 over MLLP to this "host:port"
    # (empty = off), retried with backoff (at most this many seconds apart) until acknowledged.
    hl7_results_endpoint: str = ""
    hl7_results_receiving_application: str = ""
    hl7_results_receiving_facility: str = ""
    hl7_results_retry_max_seconds: int = 300
    hl7_results_timeout_seconds: int = 30
    # Orders in: the HL7 v2 MLLP listener (ORM^O01, OMI^O23; docs/orders.md) on this port
    # (0 = off), on hl7_listen_host (empty = the server's host). Senders are mapped to a
    # tenant's source with `tessera hl7 facilities add`.
    hl7_listen_port: int = 0
    hl7_listen_host: str = ""
    # Where instance files live: "filesystem" (data_dir/blobs) or "s3" (an S3-compatible
    # object store; docs/scaling.md). Uploads are spooled on local disk either way.
    blob_store: str = "filesystem"
    s3_endpoint: str = ""  # empty = AWS for the region; e.g. http://127.0.0.1:8333 for SeaweedFS
    s3_bucket: str = ""
    # Keys are stored under this prefix (e.g. "site-a/"): deployments may share one bucket.
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Path-style URLs (endpoint/bucket/key), as most S3-compatible servers want.
    s3_path_style: bool = True
    # One request to the object store gives up after this long (the client retries first).
    s3_timeout_seconds: int = 30
    # Objects larger than this are sent as a multipart upload, in parts of this size.
    s3_multipart_bytes: int = 16 * 1024**2
    # Webhooks and routing (docs/events.md, docs/routing.md). Let webhook URLs and DICOMweb
    # destinations point at loopback/private addresses (off: SSRF protection).
    outbound_allow_private: bool = False
    # Run the delivery worker (webhooks, routing) in each server process.
    delivery_worker: bool = True
    # First retry delay; it doubles per attempt (with jitter, at most an hour).
    delivery_retry_base_seconds: float = 10.0
    # A delivery still failing this long after it was created is dead-lettered.
    delivery_max_age_seconds: int = 24 * 3600
    # A claimed delivery not recorded within this time (its worker died) is sent again.
    delivery_lease_seconds: float = 300.0
    # E-mail notifications to people (docs/events.md); no host: none are sent.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "tessera@localhost"
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    # One webhook request (connect + answer) may take this long.
    webhook_timeout_seconds: float = 10.0

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def spool_dir(self) -> Path:
        """Uploads are spooled here; on the blob store's file system so a rename stores them
        (with an object store: a local folder, uploaded from)."""
        if self.blob_store == "s3":
            return self.data_dir / "spool"
        return self.data_dir / "blobs" / ".spool"


def _coerce(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("int",):
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            return tuple(v.strip() for v in raw.split(",") if v.strip())
        return tuple(raw)
    return str(raw)


def load_settings(**overrides: Any) -> Settings:
    """Defaults < TOML file (TESSERA_CONFIG) < TESSERA_* environment < explicit overrides."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    config_path = os.environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        with open(config_path, "rb") as fh:
            for key, raw in tomllib.load(fh).items():
                key = key.replace("-", "_")
                if key not in names:
                    raise ValueError(f"unknown setting {key!r} in {config_path}")
                values[key] = _coerce(key, raw)
    for name in names:
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, raw in overrides.items():
        if raw is not None:
            values[name] = _coerce(name, raw)
    return replace(Settings(), **values)


def export_settings(settings: Settings) -> None:
    """Put resolved settings into TESSERA_* variables (for worker processes)."""
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(value)
        os.environ[ENV_PREFIX + f.name.upper()] = str(value)

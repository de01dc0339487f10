"""The DIMSE gateway: a thin pynetdicom facade over the same ingest, query and retrieve
services as DICOMweb (see docs/dimse.md)."""

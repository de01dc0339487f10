"""Tessera: a standards-based DICOMweb archive with a DIMSE gateway."""

__version__ = "0.1.0"

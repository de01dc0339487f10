"""Tessera storage layer."""

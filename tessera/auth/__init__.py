"""Tessera auth layer."""

"""Tessera dicomweb layer."""

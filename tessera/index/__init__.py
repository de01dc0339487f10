"""Tessera index layer."""

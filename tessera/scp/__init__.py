"""Tessera scp layer."""

"""Readers for corpus layouts."""

"""Compositing and evaluation (comes with issue #6)."""

"""Two-stage trainer (comes with issue #5)."""

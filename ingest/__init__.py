"""Ingest: official dataset layouts -> object records (Parquet)."""

"""Shards: Parquet shard writer, verify and streaming loader (comes with issue #3)."""

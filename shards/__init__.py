"""Shards: Parquet shard writer, verify and streaming loader."""

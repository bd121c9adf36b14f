"""IMPRINT data and training toolkit: ingest -> pairs -> shards -> train -> eval."""
__version__ = "0.1.0"

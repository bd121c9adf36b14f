"""Pairing: records -> stage-1 view pairs and stage-2 compositing pairs."""

"""Data quality, measured: scores of every record and pair, the filters that use them, and what they removed.

- :mod:`imprint.quality.scores`: the record scores (sharpness of the object region, mask quality, an
  appearance hash) computed once at ingest, and the pair scores (identity, change) computed at pairs time
  on the un-augmented object crops;
- :mod:`imprint.quality.features`: the identity feature backends (``classic``: colour statistics and
  keypoint matching, no weights; ``dinov2``: a DINOv2 model by hub id or folder, loaded once per process);
- :mod:`imprint.quality.filters`: the thresholds (:class:`~imprint.quality.filters.FiltersConfig`) and one
  filter class per reason (``blurry``, ``fragmented_mask``, ``near_duplicate``, ``identity_mismatch``,
  ``static_pair``);
- :mod:`imprint.quality.excluded`: the ``excluded/`` table, one row per removed item with its reason and score;
- :mod:`imprint.quality.histograms` and :mod:`imprint.quality.summary`: each score's distribution with its
  threshold, for ``report.json``, the dataset card and ``imprint preview``.

Ingest (:mod:`imprint.ingest.base`) computes the record scores; ``imprint pairs`` (:mod:`imprint.pairing.quality`)
runs the filters. The fault generator the tests and the benchmark measure them on is
:mod:`imprint.ingest.sample.faults`.
"""

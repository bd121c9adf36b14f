"""The two-stage trainer: stage 1 (identity encoder) and stage 2 (compositing generator), on one process or many."""

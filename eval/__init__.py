"""Compositing and evaluation: the compositing pipeline, test sets, metrics and the HTML report."""

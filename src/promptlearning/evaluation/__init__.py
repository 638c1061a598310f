"""Evaluation: metrics, run directories, reports, plots and comparisons across runs."""

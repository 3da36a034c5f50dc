"""Comparisons and experiments: runs of several models on the same data, scored side by side."""

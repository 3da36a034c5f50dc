"""Comparisons and experiments: each one its own module, run through `python -m recsys compare`."""

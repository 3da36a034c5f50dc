"""Answer recommendation requests from an exported bundle: onnxruntime + faiss + FastAPI.

Imports no torch or Lightning and nothing from `recsys` or `agents` (`tests/test_import_rules.py`
checks it); the bundle directory is the only contract with the training side (see `serving.bundle`),
and what both sides share of its format is `bundleformat`.
"""

"""Answer recommendation requests from an exported bundle: onnxruntime + faiss + FastAPI.

Imports nothing from `recsys`, torch or lightning (a test checks it); the bundle directory is
the only contract with the training side (see `serving.bundle`).
"""

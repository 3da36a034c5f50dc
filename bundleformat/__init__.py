"""The bundle format's shared pieces: code that both the producer (`recsys.export`) and the consumer
(`serving`) need, so it lives in neither, once.

- `manifest`: the format name and version, required fields, file rules, checksums, `read_manifest`
  and `verify_files`, `BundleError`;
- `signature`: the optional HMAC-SHA256 signature of the manifest;
- `profile`: how a raw user profile becomes the personality ranker's ids;
- `beam_search`: the trie-constrained beam search over semantic IDs (the model, its export and the
  server all run it).

It imports the standard library and numpy only: no torch, no Lightning, nothing of `recsys`,
`serving` or `agents` (`tests/test_import_rules.py` checks it), so `serving` stays torch-free.
"""

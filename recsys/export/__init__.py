"""Checkpoint -> serving bundle: one exporter per model kind (`embeddings`, `personality`,
`generative`) behind one dispatch (`cli`). May import recsys.errors, data, evaluation, models,
preferences and `bundleformat`; never training, experiments, agents or serving."""

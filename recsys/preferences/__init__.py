"""Stated preferences: turning reviews into preference sentences, encoding text, building the discerning axes.

Modules: encoder (sentence embeddings, offline, cached), extraction (the `PreferenceExtractor`
interface, the rule-based extractor, the world's stated truth, contexts per (user, step)), llm
(an extractor over any OpenAI-compatible endpoint), measure (extractors judged against the
world's truth), axes (the five axes of preference discerning as generation queries), pairs
(chosen / rejected items for preference optimization, and training queries that pair a dislike
with its item).
May import recsys.errors, data, evaluation and models; never export, training, experiments,
agents or serving.
"""

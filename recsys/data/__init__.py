"""Data: `InteractionData` and its loaders (outside formats, the preference world), filters, splits,
the Lightning DataModules, negative sampling and each process's share of an epoch. May import
`recsys.errors` only: data knows no model, evaluator or trainer."""

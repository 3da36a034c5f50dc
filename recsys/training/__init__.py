"""Training machinery: `python -m recsys fit|validate|test|predict` (LightningCLI), seeds, checkpoint
selection, and the multi-process (DDP) strategy. May import the lower recsys floors (errors, data,
evaluation, models, preferences, export); never experiments, agents or serving."""

"""Training machinery: `python -m recsys fit|validate|test|predict` (LightningCLI), seeds, checkpoint
selection, and the multi-process (DDP) strategy. May import recsys.errors, data, evaluation and models;
never experiments, export, agents or serving."""

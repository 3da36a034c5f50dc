"""The LightningModules (BPR/BPO/NBPO, popularity, personality ranker, SASRec, RQ-VAE, TIGER/Mender,
DPO / S-DPO fine-tuning of TIGER/Mender),
their kernels and TorchRec sharding. May import recsys.errors, data and evaluation (a model's
validation runs the evaluator) and `bundleformat` (the shared beam search); never preferences,
export, training, experiments, agents or serving."""

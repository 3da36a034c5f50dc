"""Experiments and their reports: the comparisons (noisy labels, personality, trait sweep), the
preference-discerning benchmark, the NBPO findings and the demo. May import every lower recsys
floor (errors, data, evaluation, models, preferences, export, training); never agents or serving."""

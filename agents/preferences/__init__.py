"""Preferences over trajectory segments: segments, teachers (regret, partial return), the preference
dataset, reward models and their learner. May import `agents.planning` and `recsys.errors`."""

"""The bundle format's shared pieces: code that both the producer (`recsys` export) and the consumer
(`serving`) need, so it lives in neither. It imports only the standard library (no torch, nothing
of `recsys`, `serving` or `agents`); both sides import it, and it imports neither of them."""

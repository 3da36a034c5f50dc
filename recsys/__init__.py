"""Learn to rank items from preference data. The folders are floors, lowest first: each imports only
from its own floor or lower ones (`tests/test_import_rules.py`), and none imports `agents` or `serving`.

errors.py (user-input errors) < data < evaluation < models < preferences < export < training
< experiments < cli.py (`python -m recsys <command>`).
"""

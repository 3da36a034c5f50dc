"""`python -m recsys <command>`: one entry point for every recommender task."""

from recsys.cli import main

raise SystemExit(main())

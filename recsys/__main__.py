"""`python -m recsys <command>`: one entry point for every recommender task."""

from recsys.cli import exit_after, main

exit_after(main())

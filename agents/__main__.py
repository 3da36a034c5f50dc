"""`python -m agents <command>`: reward learning, RL agents and simulations."""

from agents.cli import main

raise SystemExit(main())

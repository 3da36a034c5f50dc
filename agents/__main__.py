"""`python -m agents <command>`: reward learning, RL agents and simulations."""

from agents.cli import main
from recsys.cli import exit_after

exit_after(main())

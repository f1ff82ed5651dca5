"""Run several CLI commands in one ``torchrun`` process group (one start-up for all).

``torchrun --standalone --nproc_per_node=2 tests/cli_in_one_group.py "CMD 1" "CMD 2" ...``
runs ``sciml-diffusion CMD`` for each argument in turn on every rank and prints, per rank,
the exit status of each; each command's own ``distributed.session`` joins this one.
"""

import shlex
import sys

from sciml_diffusion import distributed
from sciml_diffusion.cli import main

if __name__ == "__main__":
    with distributed.session("cpu") as ctx:
        for command in sys.argv[1:]:
            code = main(shlex.split(command))
            print(f"rank {ctx.rank} exit {code}: {command}", flush=True)

import sys

from sciml_diffusion.cli import main

sys.exit(main())

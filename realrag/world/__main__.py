import sys

from realrag.world.cli import main

sys.exit(main())

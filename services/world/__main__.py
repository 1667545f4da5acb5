import sys

from services.world.cli import main

sys.exit(main())

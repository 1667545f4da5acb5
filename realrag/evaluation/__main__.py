import sys

from realrag.evaluation.cli import main

sys.exit(main())

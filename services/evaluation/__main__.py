import sys

from services.evaluation.cli import main

sys.exit(main())

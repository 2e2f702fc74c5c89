import sys

from humo.cli import main

sys.exit(main())

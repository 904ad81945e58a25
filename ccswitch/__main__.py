import sys

from ccswitch.cli import main

sys.exit(main())

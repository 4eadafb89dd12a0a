import sys

from charrnn.gradcheck.cli import main

sys.exit(main())

import os
import sys

# python -m puts the current folder first on the import path, and a learner's folder holds files named like
# the standard library's (random.py, test.py): the tool's own imports must not find those.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from charrnn.gradcheck.stops import end_on_signals  # noqa: E402

end_on_signals()   # before the slow imports below: a signal during them is one line too

from charrnn.gradcheck.cli import main  # noqa: E402

sys.exit(main())

import os
import sys

# python -m puts the current folder first on the import path (and an empty entry in PYTHONPATH, as in
# "PYTHONPATH=$DIR:$PYTHONPATH" with nothing before, puts it there again), and a learner's folder holds files
# named like the standard library's (random.py, numbers.py): the tool's own imports must not find those.
# charrnn's own modules are found through its package, wherever it was found.
_here = os.getcwd()
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]

from charrnn.gradcheck.stops import end_on_signals  # noqa: E402

end_on_signals()   # before the slow imports below: a signal during them is one line too

from charrnn.gradcheck.cli import main  # noqa: E402

sys.exit(main())

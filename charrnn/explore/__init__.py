"""See what a trained model learned: every unit over a text (trace.py), the units that track simple
properties of it (units.py), how far back each prediction looks (lookback.py), and one self-contained
page that shows it all (page.py, page.html). python -m charrnn.explore writes the page; charrnn.load(...)
.explore(...) does the same from Python. docs/explore.md describes the page."""

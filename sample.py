"""Sample text from a checkpoint: python sample.py checkpoint=PATH."""

import sys

if __name__ == "__main__":
    print("sample.py is not implemented yet: sampling from checkpoints lands with its own issue; "
          "training already prints samples at every evaluation.", file=sys.stderr)
    sys.exit(2)

"""``python -m data_prep.synthetic``: write the embedded procedural dataset (see ``dataset.py``)."""

import sys

from data_prep.synthetic.dataset import main

if __name__ == "__main__":
    sys.exit(main())

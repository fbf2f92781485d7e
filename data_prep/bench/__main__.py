"""``python -m data_prep.bench``: the data-preparation benchmark (see ``pipeline.py``)."""

import sys

from data_prep.bench.pipeline import main

if __name__ == "__main__":
    sys.exit(main())

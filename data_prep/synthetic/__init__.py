"""The embedded procedural dataset: scenes with true depth and cameras (``python -m data_prep.synthetic``).

``ensure_synthetic_dataset`` is the one function the training entry point reaches (through the
``data.prepare`` node of ``conf/data/synthetic.yaml``) to create the dataset on first use.
"""

from data_prep.synthetic.dataset import ensure_synthetic_dataset, generate_dataset

__all__ = ["ensure_synthetic_dataset", "generate_dataset"]

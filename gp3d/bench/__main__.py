"""``python -m gp3d.bench``: training-step speed and memory (see ``train_step.py``).

The other benchmarks: ``python -m gp3d.bench.render`` and ``python -m gp3d.bench.fid``.
"""

from gp3d.bench.train_step import main

if __name__ == "__main__":
    main()

"""gp3d tests (a package, so `tests.helpers` never resolves to a site-packages `tests`, e.g. torch-fidelity's)."""

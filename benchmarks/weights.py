"""``python -m benchmarks.weights``: the weights command under the name earlier releases printed.

The registry itself is :mod:`ophora.weights` (``python -m ophora.weights list | where NAME | fetch NAME``).
"""
from ophora.weights import main

if __name__ == "__main__":
    raise SystemExit(main())

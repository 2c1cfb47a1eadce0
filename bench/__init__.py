"""The benchmark harness: ``tox -e bench`` or ``python -m bench.run`` (see bench/run.py)."""

"""Benchmark harnesses shipped with the package (``cutslots bench <name>``).

Each harness writes only where its caller tells it to (a required ``--out``): the library
holds no results location of its own, so a run never depends on the working directory.
"""

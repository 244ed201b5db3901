"""Grid cut QP benchmark (``cutslots.bench.qp``, same as ``cutslots bench qp``), writing the
committed results ``benchmarks/results/qp.{json,md}`` unless ``--out`` says otherwise."""

import sys
from pathlib import Path

from cutslots.bench.qp import main

# Next to this script, not under the working directory; a later --out on the command line wins.
RESULTS = Path(__file__).resolve().parent / "results" / "qp"

if __name__ == "__main__":
    raise SystemExit(main(["--out", str(RESULTS), *sys.argv[1:]]))

"""Grid cut QP benchmark (``cutslots bench qp --config bench_qp``), writing the committed
results ``benchmarks/results/qp.{json,md,config.yaml}`` unless ``--out`` says otherwise;
further arguments (``--config``, ``--out``, ``key=value`` overrides) go to the command."""

import sys
from pathlib import Path

from cutslots import cli

# Next to this script, not under the working directory; a later --out on the command line wins.
RESULTS = Path(__file__).resolve().parent / "results" / "qp"

if __name__ == "__main__":
    raise SystemExit(cli.main(["bench", "qp", "--config", "bench_qp", "--out", str(RESULTS), *sys.argv[1:]]))

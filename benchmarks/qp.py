"""Grid cut QP benchmark: see ``cutslots.bench_qp`` (same as ``cutslots bench qp``)."""

from cutslots.bench_qp import main

if __name__ == "__main__":
    raise SystemExit(main())

import json
import os

import pytest

from cutslots import cli
from cutslots.bench.qp import ALLOCATORS, in_fresh_process, main


def test_bench_qp_writes_consistent_tables(tmp_path):
    out = tmp_path / "qp"
    argv = ["--sizes", "4", "6", "--batch", "6", "--sparse-batch", "3", "--reference-sizes", "3",
            "--reference-batch", "2", "--repeats", "1", "--rounds", "2", "--skip-kept-malloc", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["size"] for r in result["rows"]] == [4, 6]
    for row in result["rows"]:
        assert row["batch"] == 6
        low, high = row["closed_form_p_s_range"]  # over the two rounds
        assert 0 < low <= row["closed_form_p_s"] <= high and row["first_touch_p_d_s"] > 0
        assert "kept_p_s" not in row
        # Sparse times are extrapolated from 3 to 6 QPs, and the ratio is against p+d.
        assert row["scipy_ratio"] == row["scipy_s"] / row["closed_form_p_d_s"]
    ref = result["references"][0]
    assert ref["size"] == 3 and ref["dense_kkt_s"] > 0
    md = out.with_suffix(".md").read_text()
    assert "| 6 | 6 |" in md and "output creation" in md and "memory kept" not in md
    assert "Targets" not in md  # the targets are stated at 64 x 64 only


def _malloc_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}


def test_closed_form_timings_run_with_the_named_allocator(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # a parent's malloc settings do not leak in
    assert in_fresh_process("default", _malloc_env) == {}
    assert in_fresh_process("kept", _malloc_env) == ALLOCATORS["kept"]
    assert os.environ["MALLOC_ARENA_MAX"] == "2"  # and the parent's environment is restored


def test_cli_bench_qp_writes_only_to_out(tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as err:  # no default location: --out is required
        cli.main(["bench", "qp", "--sizes", "4"])
    assert err.value.code == 2 and "--out" in capsys.readouterr().err
    out = tmp_path / "res" / "qp"
    argv = ["--sizes", "4", "--batch", "2", "--sparse-batch", "1", "--reference-sizes", "--repeats", "1",
            "--rounds", "1", "--skip-kept-malloc", "--out", str(out)]
    assert cli.main(["bench", "qp", *argv]) == 0
    assert [r["size"] for r in json.loads(out.with_suffix(".json").read_text())["rows"]] == [4]
    assert "| 4 | 2 |" in out.with_suffix(".md").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["qp.json", "qp.md"]
    assert list(cwd.iterdir()) == []  # nothing under the working directory

import json
import os
import runpy
import sys
from pathlib import Path

import pytest

from cutslots import cli
from cutslots.bench.qp import ALLOCATORS, QPBenchConfig, in_fresh_process, run_benchmark
from cutslots.config import ConfigError, load_config, resolve_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG = resolve_config("bench_qp")


def test_bench_qp_writes_consistent_tables(tmp_path):
    out = tmp_path / "qp"
    overrides = [
        "sizes=[4, 6]",
        "batch=6",
        "sparse_batch=3",
        "reference_sizes=[3]",
        "reference_batch=2",
        "repeats=1",
        "rounds=2",
        "kept_malloc=false",
    ]
    config = load_config(CONFIG, overrides, schema=QPBenchConfig)
    assert run_benchmark(config, out) == out.with_suffix(".md").read_text()
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
    assert load_config(out.with_suffix(".config.yaml"), schema=QPBenchConfig) == config


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
        cli.main(["bench", "qp", "--config", "bench_qp", "sizes=[4]"])
    assert err.value.code == 2 and "--out" in capsys.readouterr().err
    out = tmp_path / "res" / "qp"
    overrides = [
        "sizes=[4]",
        "batch=2",
        "sparse_batch=1",
        "reference_sizes=[]",
        "repeats=1",
        "rounds=1",
        "kept_malloc=false",
    ]
    assert cli.main(["bench", "qp", "--config", "bench_qp", *overrides, "--out", str(out)]) == 0
    assert [r["size"] for r in json.loads(out.with_suffix(".json").read_text())["rows"]] == [4]
    assert "| 4 | 2 |" in out.with_suffix(".md").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["qp.config.yaml", "qp.json", "qp.md"]
    assert list(cwd.iterdir()) == []  # nothing under the working directory


@pytest.mark.parametrize(
    "override, key",
    [
        ("sizes=[]", "sizes"),
        ("sizes=[64, 0]", "sizes[1]"),
        ("batch=0", "batch"),
        ("sparse_batch=0", "sparse_batch"),
        ("reference_sizes=[-8]", "reference_sizes[0]"),
        ("repeats=0", "repeats"),
        ("rounds=0", "rounds"),
        ("device=gpu", "device"),
        ("kept_malloc=1", "kept_malloc"),
    ],
)
def test_bad_settings_name_the_key_and_the_override(override, key, tmp_path, capsys):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG, [override], schema=QPBenchConfig)
    assert err.value.key == key and err.value.source == f"{CONFIG} (override {override!r})"
    assert cli.main(["bench", "qp", "--config", "bench_qp", override, "--out", str(tmp_path / "qp")]) == 2
    assert f"{CONFIG} (override {override!r}): {key}: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_yaml_has_the_settings_of_the_committed_results():
    committed = json.loads((ROOT / "benchmarks" / "results" / "qp.json").read_text())
    config = load_config(CONFIG, schema=QPBenchConfig)
    assert to_dict(config) == to_dict(QPBenchConfig())  # the defaults are the committed run's
    assert [(r["size"], r["batch"]) for r in committed["rows"]] == [(s, config.batch) for s in config.sizes]
    refs = [(r["size"], r["batch"]) for r in committed["references"]]
    assert refs == [(s, config.reference_batch) for s in config.reference_sizes]
    meta = committed["meta"]
    assert (meta["rounds"], meta["device"], list(meta["allocators"])) == (
        config.rounds,
        config.device,
        config.allocators,
    )


def test_make_bench_and_the_wrapper_write_the_committed_location(monkeypatch):
    make = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "bench qp" in line)
    args = cli.build_parser().parse_args(make.split("cutslots ", 1)[1].split())
    assert (args.config, args.out, args.overrides) == ("bench_qp", Path("benchmarks/results/qp"), [])
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(sys, "argv", ["qp.py", "rounds=1"])
    with pytest.raises(SystemExit) as err:
        runpy.run_path(str(ROOT / "benchmarks" / "qp.py"), run_name="__main__")
    args = cli.build_parser().parse_args(calls[0])
    assert err.value.code == 0 and args.out == ROOT / "benchmarks" / "results" / "qp"
    assert (args.config, args.overrides) == ("bench_qp", ["rounds=1"])

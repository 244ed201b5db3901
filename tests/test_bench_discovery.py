"""The discovery benchmark's whole path at tiny size on the CPU (``dry_run=true``): training,
evaluation, reuse of finished runs, tables and figures; and the GPU recipe's time budget."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from cutslots.config import ConfigError, experiment_from_dict, load_experiment, to_dict
from cutslots.experiments.evaluation import decoder_verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_discovery", ROOT / "benchmarks" / "discovery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the config's annotations through it
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_tables_curves_and_figures_and_reuses_finished_runs(bench, tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "results" / "disc"
    args = [
        "dry_run=true",
        "train_sets=[shapes, textured]",
        "models=[cut, slot_attention]",
        "seeds=[0, 1]",
        f"work={work}",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    runs = report["runs"]
    assert len(runs) == 2 * 2 * 2
    for r in runs:
        assert r["config"]["train"]["steps"] == 3 and r["config"]["data"]["image_size"] == 16
        assert set(r["metrics"]) == set(bench.EVAL_SETS[r["train_set"]])
        steps, seconds = r["curves"]["train/seconds"]
        assert steps == [1, 2, 3] and seconds == sorted(seconds)
    summary = report["summary"]
    cut = summary["textured"]["cut"]
    assert cut["seeds"] == [0, 1]
    for name in ("textured", "camo", "ood"):
        values = [
            r["metrics"][name]["grouping_ari_fg"]["mean"]
            for r in runs
            if r["train_set"] == "textured" and r["model"] == "cut"
        ]
        assert cut[name]["grouping_ari_fg"]["mean"] == pytest.approx(sum(values) / 2)
    text = out.with_suffix(".md").read_text()
    assert "## Trained on `textured`, evaluated on `camo`" in text
    assert text.count("| slot_attention | 2 |") == 4  # one row per evaluated set
    seeds_beating = [
        r["metrics"]["shapes"]["grouping_ari_fg"]["mean"] - r["metrics"]["shapes"]["static_ari_fg"]["mean"] >= 0.10
        and r["metrics"]["shapes"]["grouping_margin"]["mean"] >= 0.10
        for r in runs
        if r["train_set"] == "shapes" and r["model"] == "cut"
    ]
    assert summary["shapes"]["cut"]["shapes"]["seeds_discovering"] == sum(seeds_beating)
    shapes_section = text.split("## Trained on `textured`")[0]
    cut_row = next(line for line in shapes_section.splitlines() if line.startswith("| cut | 2 |"))
    assert cut_row.endswith(f"| {sum(seeds_beating)} of 2 |")
    # The decoder's fixed-layout reference and its verdict, from the runs' own numbers.
    decoder = summary["shapes"]["cut"]["shapes"]
    static = decoder["decoder_static_ari_fg"]["mean"]
    assert static == pytest.approx(
        sum(
            r["metrics"]["shapes"]["decoder_static_ari_fg"]["mean"]
            for r in runs
            if r["train_set"] == "shapes" and r["model"] == "cut"
        )
        / 2
    )
    assert f"| {100 * static:.1f} ± " in cut_row
    assert f"| {decoder_verdict(decoder).split(':')[0]} |" in cut_row  # its wording: test_evaluation
    with Image.open(out.with_name("disc_curves.png")) as img:
        assert img.format == "PNG" and img.width > 0
    assert out.with_name("disc_slot_attention_ood.png").is_file()

    # A second invocation finds every run finished: nothing is retrained.
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("*/*/checkpoint.pt")}
    capsys.readouterr()
    assert bench.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("*/*/checkpoint.pt")} == stamps
    assert "seed 0:" not in capsys.readouterr().out  # no run reported as trained

    # A kept run from before a metric existed gets it from its checkpoint with refresh=true,
    # the same value the evaluation gave at the end of training.
    path = work / "shapes" / "cut_seed0" / "result.json"
    result = json.loads(path.read_text())
    newer = ("grouping_margin", "decoder_static_ari_fg")  # a grouping and a decoder metric
    recorded = {k: result["metrics"]["shapes"].pop(k) for k in newer}
    path.write_text(json.dumps(result))
    assert bench.main(args) == 0  # without refresh: reused as it is
    assert not set(newer) & set(json.loads(path.read_text())["metrics"]["shapes"])
    refresh = [*args[:-2], "refresh=true", *args[-2:]]  # overrides before --out
    assert bench.main(refresh) == 0
    for key, value in recorded.items():
        assert json.loads(path.read_text())["metrics"]["shapes"][key] == pytest.approx(value, abs=1e-12)
    assert {p: p.stat().st_mtime_ns for p in work.glob("*/*/checkpoint.pt")} == stamps  # nothing retrained
    # A recorded metric the checkpoint does not reproduce is an error, not a silent mix.
    result = json.loads(path.read_text())
    result["metrics"]["shapes"].pop("grouping_margin")
    result["metrics"]["shapes"]["ari_fg"]["mean"] += 0.5
    path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="re-evaluating gives shapes ari_fg"):
        bench.main(refresh)


def test_gpu_recipe_is_gpu_sized_and_minutes_pick_the_steps(bench, tmp_path, monkeypatch):
    raw = bench.gpu_recipe(str(tmp_path))
    assert (raw["data"]["image_size"], raw["model"]["num_slots"], raw["train"]["device"]) == (64, 12, "cuda")
    # The time budget: steps = budget / measured step time (here on the CPU at dry size).
    dry = bench.dry_run(bench.gpu_recipe(str(tmp_path)))
    times = iter([0.0, 0.5])  # the probe's start and end: 10 steps in 0.5 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(times))
    assert bench.steps_within(dry, seconds=6.0) == 120


def test_settings_are_a_config_section(bench, tmp_path):
    with pytest.raises(ConfigError, match=r"benchmarks/discovery.py \(override 'models=\[cutt\]'\): models: unknown"):
        bench.main(["models=[cutt]"])
    with pytest.raises(ConfigError, match="minutes: minutes and steps exclude each other"):
        bench.main(["minutes=1", "steps=3"])
    path = tmp_path / "bench.yaml"
    path.write_text("seeds: [4]\nrecipe: tpu\n")
    with pytest.raises(ConfigError, match=rf"{path}: recipe: Input should be 'cpu', 'demo' or 'gpu'"):
        bench.main(["--config", str(path)])
    defaults = bench.DiscoveryBenchConfig()
    assert (defaults.seeds, defaults.train_sets, defaults.recipe) == ((0, 1, 2), ("shapes", "textured"), "cpu")
    # Each recipe keeps its finished runs apart by default, so their tables cannot mix.
    folders = [bench.DiscoveryBenchConfig(recipe=r).work_dir for r in ("cpu", "demo", "gpu")]
    assert [f.name for f in folders] == ["bench_discovery", "bench_discovery_demo", "bench_discovery_gpu"]
    assert bench.DiscoveryBenchConfig(recipe="demo", work="w").work_dir == Path("w")


def test_demo_recipe_is_the_demo_config_with_the_models_grouping(bench, tmp_path):
    demo = to_dict(load_experiment(ROOT / "configs" / "demo.yaml"))
    raw = to_dict(experiment_from_dict(bench.run_config("demo", "textured", "slot_attention", 2, None, tmp_path)))
    assert raw["train"] == {**demo["train"], "seed": 2, "out_dir": str(tmp_path)}
    assert raw["model"] == {**demo["model"], "grouping": raw["model"]["grouping"]}
    assert raw["model"]["grouping"]["kind"] == "slot_attention"
    assert raw["data"] == {**demo["data"], "variant": "textured", "eval_variants": ["camo", "ood"]}


def test_a_kept_run_is_the_same_run_wherever_it_was_written(bench, tmp_path):
    raw = bench.run_config("cpu", "shapes", "cut", 0, None, tmp_path / "a", dry=True)
    kept = bench.to_dict(bench.experiment_from_dict(raw))
    moved = {**kept, "train": {**kept["train"], "out_dir": "/elsewhere/shapes/cut_seed0"}}
    assert bench._same_run(moved, kept)
    other_seed = {**kept, "train": {**kept["train"], "seed": 1}}
    assert not bench._same_run(other_seed, kept)
    # A run kept before train.schedule existed trained with its default, and is the same run.
    older = {**kept, "train": {k: v for k, v in kept["train"].items() if k != "schedule"}}
    assert bench._same_run(older, kept)
    assert not bench._same_run(older, {**kept, "train": {**kept["train"], "schedule": "cosine"}})


def test_refresh_without_a_checkpoint_names_it(bench, tmp_path):
    raw = bench.run_config("cpu", "shapes", "cut", 0, None, tmp_path, dry=True)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt: no checkpoint"):
        bench.refreshed({"config": raw, "metrics": {}}, tmp_path)


@pytest.mark.parametrize(
    "name, train_set, model",
    [
        ("random_walker_shapes", "shapes", "random_walker"),
        ("slot_attention_rw_shapes", "shapes", "slot_attention_rw"),
        ("synthetic_textured", "textured", "cut"),
    ],
)
def test_shipped_configs_are_the_benchmarked_runs(bench, name, train_set, model):
    """The shipped YAML of a benchmarked model is the benchmark's run of it (seed 0), up to its
    name and run folder."""
    shipped = load_experiment(ROOT / "configs" / f"{name}.yaml")
    raw = bench.run_config("cpu", train_set, model, 0, None, Path(shipped.train.out_dir))
    raw["name"] = shipped.name
    assert to_dict(shipped) == to_dict(experiment_from_dict(raw))


@pytest.mark.parametrize(("results", "recipe", "count"), [("discovery", "cpu", 48), ("discovery_demo", "demo", 30)])
def test_committed_runs_are_what_their_recipe_trains(bench, results, recipe, count):
    """Every run in a committed results file was trained with the config ``run_config`` builds
    now for its recipe (the ``cpu`` schedule is pinned, so the demo's own schedule can move on;
    the ``demo`` recipe is the demo's config, so changing the demo fails this until rerun)."""
    runs = json.loads((ROOT / "benchmarks" / "results" / f"{results}.json").read_text())["runs"]
    assert len(runs) >= count
    for run in runs:
        assert run["config"]["name"].startswith(f"bench-{recipe}-"), run["config"]["name"]
        raw = bench.run_config(recipe, run["train_set"], run["model"], run["seed"], None, Path("anywhere"))
        wanted = to_dict(experiment_from_dict(raw))
        assert bench._same_run(run["config"], wanted), (run["train_set"], run["model"], run["seed"])

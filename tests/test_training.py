"""Training loop, checkpoints, logging, sampler and schedule, on a tiny CPU model."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from cutslots.config import ExperimentConfig, ModelConfig, TrainConfig
from cutslots.models.builders import build_autoencoder
from cutslots.train import checkpoint as ckpt_module
from cutslots.train.checkpoint import load_checkpoint, save_checkpoint
from cutslots.train.distributed import InfiniteSampler
from cutslots.train.loop import train
from cutslots.train.optim import lr_factor, make_scheduler
from tiny_training import TinyAutoencoder, TinyScenes

SRC = Path(__file__).resolve().parents[1] / "src"


def config(out_dir: Path, **changes: Any) -> TrainConfig:
    base = TrainConfig(
        steps=8,
        batch_size=4,
        optimizer={"lr": 0.05},
        warmup_steps=3,
        decay_steps=5,
        grad_clip=0.5,
        log_every=2,
        eval_every=None,
        checkpoint_every=3,
        out_dir=str(out_dir),
        device="cpu",
        seed=3,
    )
    return TrainConfig(**{**base.model_dump(), **changes})


def fresh_model(noise: float = 0.5) -> TinyAutoencoder:
    torch.manual_seed(0)
    return TinyAutoencoder(noise=noise)  # noise: the forward pass draws from the torch RNG


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def deterministic_rows(path: Path) -> list[list[str]]:
    """The scalar log without its one timing scalar, ``train/seconds``, after checking that
    the clock only moves forward (also across a resume)."""
    rows = read_csv(path)
    seconds = [float(r[2]) for r in rows[1:] if r[1] == "train/seconds"]
    assert seconds and seconds == sorted(seconds) and seconds[0] > 0
    return [r for r in rows if r[1] != "train/seconds"]


class HookedScenes(TinyScenes):
    """TinyScenes that runs ``hook`` on the ``at``-th item fetch (1-based)."""

    def __init__(self, at: int, hook: Any) -> None:
        super().__init__()
        self.at, self.hook, self.fetches = at, hook, 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.fetches += 1
        if self.fetches == self.at:
            self.hook()
        return super().__getitem__(i)


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    """An uninterrupted 8-step run: final parameters and its out_dir.

    Function-scoped on purpose: it must run under the same torch thread count as the test
    (CPU reductions split work per thread, so bitwise equality needs equal thread counts).
    """
    out = tmp_path_factory.mktemp("reference")
    model = fresh_model()
    summary = train(model, TinyScenes(), config(out))
    assert (summary.step, summary.start_step, summary.interrupted) == (8, 0, False)
    return params(model), out


# ---------------------------------------------------------------- schedule and sampler


def test_lr_factor_matches_hand_computed_schedule() -> None:
    kw = dict(schedule="exponential", decay_rate=0.5, decay_steps=10, warmup_steps=4, steps=100)
    assert lr_factor(0, **kw) == pytest.approx(0.25)
    assert lr_factor(2, **kw) == pytest.approx(0.75 * 0.5**0.2)
    assert lr_factor(3, **kw) == pytest.approx(0.5**0.3)
    assert lr_factor(20, **kw) == pytest.approx(0.25)
    assert lr_factor(7, **(kw | {"warmup_steps": 0})) == pytest.approx(0.5**0.7)


def test_cosine_lr_factor_matches_hand_computed_schedule() -> None:
    # 4 warmup updates, then a half cosine over the remaining 8: cos(pi t) at t = 0, 1/4, 1/2, 1.
    kw = dict(schedule="cosine", decay_rate=0.5, decay_steps=10, warmup_steps=4, steps=12)
    assert [lr_factor(s, **kw) for s in (0, 2)] == pytest.approx([0.25, 0.75])
    expected = [1.0, (1 + 2**-0.5) / 2, 0.5, 0.0, 0.0]
    assert [lr_factor(s, **kw) for s in (4, 6, 8, 12, 20)] == pytest.approx(expected)
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor(0, **(kw | {"schedule": "linear"}))


def test_scheduler_sets_optimizer_lr_per_step() -> None:
    cfg = TrainConfig(optimizer={"lr": 0.1}, decay_rate=0.1, decay_steps=2, warmup_steps=2)
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    sched = make_scheduler(opt, cfg)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.1 * 0.5, 0.1 * 0.1**0.5, 0.1 * 0.1, 0.1 * 0.1**1.5]
    assert seen == pytest.approx(expected)


@pytest.mark.parametrize(("size", "world"), [(10, 1), (10, 3), (7, 2), (2, 5)])
def test_sampler_shards_match_torch_distributed_sampler(size: int, world: int) -> None:
    for rank in range(world):
        oracle = DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=True, seed=11)
        expected = []
        for epoch in range(3):
            oracle.set_epoch(epoch)
            expected += list(oracle)
        stream = iter(InfiniteSampler(size, seed=11, rank=rank, world_size=world))
        assert [next(stream) for _ in expected] == expected
        # Starting part-way continues the same stream (what a resume relies on).
        start = len(expected) // 2 + 1
        later = iter(InfiniteSampler(size, seed=11, rank=rank, world_size=world, start=start))
        assert [next(later) for _ in expected[start:]] == expected[start:]


def test_sampler_state_refuses_a_different_dataset_or_world() -> None:
    state = InfiniteSampler(10, seed=1, world_size=2).state_dict(consumed=6)
    assert InfiniteSampler.from_state(state, size=10, world_size=2).start == 6
    with pytest.raises(ValueError, match="size=10 but now size=12"):
        InfiniteSampler.from_state(state, size=12, world_size=2)
    with pytest.raises(ValueError, match="world_size=2 but now world_size=1"):
        InfiniteSampler.from_state(state, size=10, world_size=1)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_restores_everything(tmp_path: Path) -> None:
    model = fresh_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = make_scheduler(opt, TrainConfig(optimizer={"lr": 0.1}, warmup_steps=5))
    for _ in range(2):
        model(torch.rand(2, 3, 8, 8)).get("recon").sum().backward()
        opt.step()
        sched.step()
    saved = params(model)
    opt_state = opt.state_dict()["state"][0]["exp_avg"].clone()
    path = save_checkpoint(
        tmp_path / "c.pt",
        model,
        step=2,
        optimizer=opt,
        scheduler=sched,
        config={"train": {"lr": 0.1}},
        extra={"note": 5},
    )
    # The RNG draws right after saving are what a restore must reproduce.
    draws = (torch.rand(3), np.random.rand(3), random.random())

    model2 = TinyAutoencoder(noise=0.5)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    sched2 = make_scheduler(opt2, TrainConfig(optimizer={"lr": 0.1}, warmup_steps=5))
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    loaded = load_checkpoint(path, model2, optimizer=opt2, scheduler=sched2, restore_rng=True)
    assert (loaded.step, loaded.config, loaded.extra) == (2, {"train": {"lr": 0.1}}, {"note": 5})
    assert_bitwise_equal(params(model2), saved)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt_state)
    assert sched2.last_epoch == 2 and opt2.param_groups[0]["lr"] == pytest.approx(0.1 * 3 / 5 * 0.5**2e-5)
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1]) and random.random() == draws[2]


def test_load_errors_are_specific(tmp_path: Path) -> None:
    model = fresh_model()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", model)
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="junk.pt is not a cutslots checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", model)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt is not a cutslots checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt", model)
    path = save_checkpoint(tmp_path / "c.pt", model, step=0)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(path, model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0))


def test_fingerprint_mismatch_names_the_differing_params(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", fresh_model(), step=1)
    bigger = TinyAutoencoder(num_slots=3)
    before = params(bigger)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path, bigger)
    message = str(info.value)
    assert "different model" in message
    assert "mask_logits.weight (2, 3, 1, 1) vs (3, 3, 1, 1)" in message
    assert "colours.bias (6,) vs (9,)" in message
    assert_bitwise_equal(params(bigger), before)  # nothing was loaded

    class Extended(TinyAutoencoder):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"missing from the checkpoint: extra.weight, extra.bias"):
        load_checkpoint(path, Extended())


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fresh_model()
    path = save_checkpoint(tmp_path / "c.pt", model, step=1)
    first = params(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def torn_save(obj: Any, f: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.pt"]  # no temp file left behind
    restored = TinyAutoencoder(noise=0.5)
    assert load_checkpoint(path, restored).step == 1
    assert_bitwise_equal(params(restored), first)


def test_process_killed_mid_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    # The child saves step 1, then is SIGKILLed while step 2's bytes are half written.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from torch import nn
        from cutslots.train import checkpoint as c
        model = nn.Linear(4, 4)
        c.save_checkpoint({str(tmp_path / "c.pt")!r}, model, step=1)
        def killed_save(obj, f):
            f.write(b"PK partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        c.torch.save = killed_save
        c.save_checkpoint({str(tmp_path / "c.pt")!r}, model, step=2)
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert load_checkpoint(tmp_path / "c.pt", nn.Linear(4, 4)).step == 1


# ---------------------------------------------------------------- the loop


def test_same_seed_same_result_other_seed_differs(tmp_path: Path, reference: tuple[dict, Path]) -> None:
    model = fresh_model()
    train(model, TinyScenes(), config(tmp_path / "a"))
    assert_bitwise_equal(params(model), reference[0])
    other = fresh_model()
    train(other, TinyScenes(), config(tmp_path / "b", seed=4))
    assert not torch.equal(params(other)["colours.weight"], reference[0]["colours.weight"])


def test_half_then_resume_equals_uninterrupted(tmp_path: Path, reference: tuple[dict, Path]) -> None:
    first = fresh_model()
    summary = train(first, TinyScenes(), config(tmp_path, steps=4))
    assert summary.step == 4
    resumed = fresh_model()  # a new process would start from fresh weights
    summary = train(resumed, TinyScenes(), config(tmp_path, steps=8), resume=True)
    assert (summary.start_step, summary.step) == (4, 8)
    assert_bitwise_equal(params(resumed), reference[0])
    assert load_checkpoint(tmp_path / "checkpoint.pt", fresh_model()).step == 8


def test_crash_then_resume_equals_uninterrupted_with_clean_logs(tmp_path: Path, reference: tuple[dict, Path]) -> None:
    def crash() -> None:
        raise RuntimeError("simulated crash")

    # Batches of 4: fetch 21 happens in step 6, after the checkpoint at step 3 and the logs of
    # steps 2 and 4 (each the mean loss of the 2 steps since the previous log).
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(fresh_model(), HookedScenes(at=21, hook=crash), config(tmp_path))
    assert load_checkpoint(tmp_path / "checkpoint.pt", fresh_model()).step == 3
    assert max(int(r[0]) for r in read_csv(tmp_path / "scalars.csv")[1:]) == 4
    resumed = fresh_model()
    train(resumed, TinyScenes(), config(tmp_path), resume=True)
    assert_bitwise_equal(params(resumed), reference[0])
    # The CSV holds each step exactly once, with the uninterrupted run's values.
    assert deterministic_rows(tmp_path / "scalars.csv") == deterministic_rows(reference[1] / "scalars.csv")


def test_tensorboard_after_resume_has_each_step_once(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def crash() -> None:
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        train(fresh_model(), HookedScenes(at=21, hook=crash), config(tmp_path))
    # TensorBoard orders event files by name, which starts with the creation second: let the
    # resumed run's file be (as in real life) from a later second than the crashed run's.
    time.sleep(1.05)
    train(fresh_model(), TinyScenes(), config(tmp_path), resume=True)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [2, 4, 6, 8]
    from_csv = [float(r[2]) for r in read_csv(tmp_path / "scalars.csv")[1:] if r[1] == "train/loss"]
    assert [e.value for e in losses] == pytest.approx(from_csv, rel=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_step_checkpoints_and_resumes_exactly(
    tmp_path: Path, reference: tuple[dict, Path], sig: signal.Signals
) -> None:
    before = signal.getsignal(sig)
    # Fetch 18 happens in step 5: that step is completed, then training stops.
    summary = train(fresh_model(), HookedScenes(at=18, hook=lambda: os.kill(os.getpid(), sig)), config(tmp_path))
    assert (summary.interrupted, summary.step) == (True, 5)
    assert signal.getsignal(sig) is before  # handlers are restored
    assert load_checkpoint(tmp_path / "checkpoint.pt", fresh_model()).step == 5
    resumed = fresh_model()
    summary = train(resumed, TinyScenes(), config(tmp_path), resume=True)
    assert (summary.interrupted, summary.start_step, summary.step) == (False, 5, 8)
    assert_bitwise_equal(params(resumed), reference[0])
    assert deterministic_rows(tmp_path / "scalars.csv") == deterministic_rows(reference[1] / "scalars.csv")


def test_eval_fn_runs_in_eval_mode_and_does_not_shift_training(tmp_path: Path, reference: tuple[dict, Path]) -> None:
    calls = []

    def eval_fn(model: nn.Module, step: int) -> dict[str, float]:
        calls.append((step, model.training, torch.is_grad_enabled()))
        return {"noise": torch.rand(()).item(), "step": step}  # consumes the RNG

    model = fresh_model()
    summary = train(model, TinyScenes(), config(tmp_path, eval_every=3), eval_fn=eval_fn)
    assert calls == [(3, False, False), (6, False, False)]
    assert model.training
    assert_bitwise_equal(params(model), reference[0])
    rows = [r for r in read_csv(tmp_path / "scalars.csv") if r[1] == "eval/step"]
    assert rows == [["3", "eval/step", "3.0"], ["6", "eval/step", "6.0"]]
    assert summary.metrics["eval/step"] == 6.0


def test_loss_curve_in_csv_is_the_batch_mse(tmp_path: Path) -> None:
    # Oracle: recompute step 1's loss by hand from the sampler's first batch.
    cfg = config(tmp_path, steps=1, grad_clip=None)
    model = fresh_model(noise=0.0)
    init = fresh_model(noise=0.0)
    train(model, TinyScenes(), cfg)
    indices = list(InfiniteSampler(24, seed=cfg.seed).epoch_indices(0)[:4])
    images = torch.stack([TinyScenes()[i]["image"] for i in indices])
    expected = ((init(images)["recon"] - images) ** 2).mean().item()
    rows = {r[1]: float(r[2]) for r in read_csv(tmp_path / "scalars.csv")[1:]}
    assert rows["train/loss"] == pytest.approx(expected, rel=1e-6)
    assert rows["train/lr"] == pytest.approx(0.05 / 3)


def test_experiment_config_is_stored_in_the_checkpoint(tmp_path: Path) -> None:
    cfg = config(tmp_path, steps=2)
    experiment = ExperimentConfig(name="tiny", model=ModelConfig(num_slots=2), train=cfg)
    train(fresh_model(), TinyScenes(), cfg, experiment=experiment)
    stored = load_checkpoint(tmp_path / "checkpoint.pt", fresh_model()).config
    assert stored is not None
    assert (stored["name"], stored["model"]["num_slots"], stored["train"]["steps"]) == ("tiny", 2, 2)
    with pytest.raises(ValueError, match="train section differs"):
        train(fresh_model(), TinyScenes(), config(tmp_path / "b"), experiment=experiment)


def test_bad_runs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(fresh_model(), TinyScenes(), config(tmp_path), resume=True)
    train(fresh_model(), TinyScenes(), config(tmp_path, steps=2))
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(fresh_model(), TinyScenes(), config(tmp_path, steps=2))
    with pytest.raises(ValueError, match=r"optimizer.lr \(0.05 -> 0.1\)"):
        train(fresh_model(), TinyScenes(), config(tmp_path, optimizer={"lr": 0.1}), resume=True)
    with pytest.raises(ValueError, match="fewer than the 2 steps"):
        train(fresh_model(), TinyScenes(), config(tmp_path, steps=1), resume=True)
    with pytest.raises(ValueError, match=r"schedule \('exponential' -> 'cosine'\)"):
        train(fresh_model(), TinyScenes(), config(tmp_path, schedule="cosine"), resume=True)
    # A cosine run laid out over 2 steps cannot be extended: its lr would change after the fact.
    train(fresh_model(), TinyScenes(), config(tmp_path / "cos", steps=2, schedule="cosine"))
    with pytest.raises(ValueError, match=r"steps \(2 -> 3\)"):
        train(fresh_model(), TinyScenes(), config(tmp_path / "cos", steps=3, schedule="cosine"), resume=True)

    class NoImage(TinyScenes):
        def __getitem__(self, i: int) -> Any:
            return super().__getitem__(i)["mask"]

    with pytest.raises(TypeError, match="'image'"):
        train(fresh_model(), NoImage(), config(tmp_path / "x"))

    class Exploding(TinyAutoencoder):
        def loss(self, images: torch.Tensor, out: dict) -> torch.Tensor:
            return super().loss(images, out) / 0.0

    model = Exploding()
    before = params(model)
    with pytest.raises(FloatingPointError, match="loss is inf at step 1"):
        train(model, TinyScenes(), config(tmp_path / "y"))
    assert_bitwise_equal(params(model), before)  # the bad step never updated the weights
    with pytest.raises(TypeError, match="no loss"):
        train(nn.Linear(2, 2), TinyScenes(), config(tmp_path / "z"))
    with pytest.raises(TypeError, match="TrainConfig"):
        train(fresh_model(), TinyScenes(), {"steps": 2})  # type: ignore[arg-type]


# ---------------------------------------------------------------- mixed precision and accumulation


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_exactly(
    tmp_path: Path, reference: tuple[dict, Path], precision: str
) -> None:
    start = params(fresh_model())
    whole = fresh_model()
    summary = train(whole, TinyScenes(), config(tmp_path / "whole", precision=precision))
    assert np.isfinite(summary.metrics["train/loss"])
    for name, value in params(whole).items():
        assert not torch.equal(value, start[name]), name  # trained
        assert not torch.equal(value, reference[0][name]), name  # and not as in float32: autocast ran
    first = fresh_model()
    train(first, TinyScenes(), config(tmp_path / "split", steps=4, precision=precision))
    saved = load_checkpoint(tmp_path / "split" / "checkpoint.pt", fresh_model()).extra
    assert ("grad_scaler" in saved) == (precision == "fp16")  # fp16's loss scale resumes too
    resumed = fresh_model()
    summary = train(resumed, TinyScenes(), config(tmp_path / "split", precision=precision), resume=True)
    assert (summary.start_step, summary.step) == (4, 8)
    assert_bitwise_equal(params(resumed), params(whole))


@pytest.mark.parametrize("grouping", ["cut", "random_walker"])
def test_bf16_trains_a_qp_model_and_resumes_exactly(tmp_path: Path, grouping: str) -> None:
    # A real model at 16 px: the grouping's QP layer solves in float32 inside the autocast region.
    def model() -> nn.Module:
        torch.manual_seed(0)
        small = {"encoder": {"channels": 8}, "decoder": {"channels": 8, "broadcast": 8}}
        return build_autoencoder(ModelConfig(num_slots=3, slot_dim=8, grouping={"kind": grouping}, **small), 16)

    scenes, start = TinyScenes(size=16), params(model())
    whole = model()
    summary = train(whole, scenes, config(tmp_path / "whole", steps=4, precision="bf16"))
    assert np.isfinite(summary.metrics["train/loss"])
    assert any(not torch.equal(v, start[k]) for k, v in params(whole).items() if k.startswith("grouping."))
    train(model(), scenes, config(tmp_path / "split", steps=2, precision="bf16"))
    resumed = model()
    train(resumed, scenes, config(tmp_path / "split", steps=4, precision="bf16"), resume=True)
    assert_bitwise_equal(params(resumed), params(whole))


class DoubleScenes(TinyScenes):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        return {**item, "image": item["image"].double()}


def test_accumulating_two_micro_batches_equals_one_double_batch(tmp_path: Path) -> None:
    # float64 and no noise (its draws depend on the batch shape): the runs differ only by
    # rounding. TinyAutoencoder has no batch-coupled layer (no BatchNorm), so the gradient of
    # a mean loss over 2B items is the mean of the two B-item gradients: the 1/n scaling.
    # Adam is blind to a gradient's scale, so the logged gradient norm checks the scaling.
    runs = {}
    for name, batch_size, accumulate in (("big", 8, 1), ("micro", 4, 2)):
        model = fresh_model(noise=0.0).double()
        cfg = config(tmp_path / name, batch_size=batch_size, accumulate=accumulate, log_every=1, grad_clip=None)
        summary = train(model, DoubleScenes(), cfg)
        assert summary.step == 8  # optimiser steps, not micro-batches
        runs[name] = params(model), read_csv(tmp_path / name / "scalars.csv")
    (big, big_log), (micro, micro_log) = runs["big"], runs["micro"]
    for k in big:
        torch.testing.assert_close(micro[k], big[k], rtol=1e-10, atol=1e-12)
    assert [r[:2] for r in micro_log] == [r[:2] for r in big_log]  # the same steps and scalars
    for m, b in zip(micro_log[1:], big_log[1:]):
        if m[1] in ("train/loss", "train/grad_norm", "train/lr"):
            assert float(m[2]) == pytest.approx(float(b[2]), rel=1e-10), m


def test_accumulation_resumes_exactly(tmp_path: Path) -> None:
    straight = fresh_model()
    train(straight, TinyScenes(), config(tmp_path / "a", accumulate=3))
    first = fresh_model()
    train(first, TinyScenes(), config(tmp_path / "b", steps=4, accumulate=3))
    resumed = fresh_model()
    train(resumed, TinyScenes(), config(tmp_path / "b", accumulate=3), resume=True)
    assert_bitwise_equal(params(resumed), params(straight))
    # A stream counts the micro-batches it consumed: 3 steps of 2 batches.
    stream = fresh_model()
    train(stream, StreamedScenes(), config(tmp_path / "c", accumulate=2))
    first = fresh_model()
    train(first, StreamedScenes(), config(tmp_path / "d", steps=3, accumulate=2))
    assert load_checkpoint(tmp_path / "d" / "checkpoint.pt", fresh_model()).extra["stream_batches"] == 6
    resumed = fresh_model()
    train(resumed, StreamedScenes(), config(tmp_path / "d", accumulate=2), resume=True)
    assert_bitwise_equal(params(resumed), params(stream))


def test_precision_and_accumulate_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train(fresh_model(), TinyScenes(), config(tmp_path, steps=2))
    with pytest.raises(ValueError, match=r"precision \('fp32' -> 'bf16'\)"):
        train(fresh_model(), TinyScenes(), config(tmp_path, precision="bf16"), resume=True)
    with pytest.raises(ValueError, match=r"accumulate \(1 -> 2\)"):
        train(fresh_model(), TinyScenes(), config(tmp_path, accumulate=2), resume=True)
    # A dtype the device's autocast lacks (torch then warns and turns autocast off).
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type: False)
    with pytest.raises(ValueError, match=r"precision: 'fp16' is not supported by torch.autocast on cpu"):
        train(fresh_model(), TinyScenes(), config(tmp_path / "x", precision="fp16"))


# ---------------------------------------------------------------- streams and other inputs


class StreamedScenes(torch.utils.data.IterableDataset):
    """TinyScenes as a stream (like the TFRecord readers), under another input key."""

    def __init__(self, key: str = "image") -> None:
        self.scenes, self.key = TinyScenes(n=10), key

    def __iter__(self):
        for i in range(len(self.scenes)):
            item = self.scenes[i]
            yield {self.key: item["image"], "mask": item["mask"]}


def test_stream_trains_pass_after_pass_and_resumes_exactly(tmp_path: Path) -> None:
    # 10 items, batch 4, drop_last: 2 batches a pass, so 8 steps run 4 passes.
    straight = fresh_model()
    train(straight, StreamedScenes("pixels"), config(tmp_path / "a"), input_key="pixels")
    first = fresh_model()
    train(first, StreamedScenes("pixels"), config(tmp_path / "b", steps=3), input_key="pixels")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt", fresh_model()).extra["stream_batches"] == 3
    resumed = fresh_model()
    summary = train(resumed, StreamedScenes("pixels"), config(tmp_path / "b"), resume=True, input_key="pixels")
    assert (summary.start_step, summary.step) == (3, 8)
    assert_bitwise_equal(params(resumed), params(straight))


def test_stream_or_key_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="items must be dicts with a 'frames' tensor"):
        train(fresh_model(), TinyScenes(), config(tmp_path / "a"), input_key="frames")

    class Tiny(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield TinyScenes()[0]

    with pytest.raises(ValueError, match="yielded no full batch"):
        train(fresh_model(), Tiny(), config(tmp_path / "b"))

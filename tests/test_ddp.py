"""DDP under torchrun (gloo, 2 CPU ranks) matches single-process training on the same samples."""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import tiny_training
from cutslots.train.checkpoint import load_checkpoint

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)


def torchrun(*args: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    # Own session, so a timeout can kill torchrun with everything in its process group; the
    # ranks (own sessions, started by torchrun) end themselves through the script's watchdog.
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            str(TESTS / "tiny_training.py"),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            _, stderr = proc.communicate(timeout=tiny_training.WATCHDOG_S + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            pytest.fail(f"torchrun timed out and was killed:\n{stderr[-8000:]}")
    assert proc.returncode == 0, stderr[-8000:]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_ranks_equal_one_process_with_the_global_batch(tmp_path: Path, accumulate: int) -> None:
    steps, batch = 5, 8  # global batch 8: 4 per rank under DDP
    ddp_dir = tmp_path / "ddp"
    # 3 steps, then a resumed run to 5: also checks that each rank continues its own shard.
    # With accumulate 2, each step's first micro-batch runs under no_sync.
    torchrun(str(ddp_dir), str(steps), str(batch), "3", str(accumulate))

    # Oracle: the same script in this single process; the sampler gives it the union of the
    # two ranks' samples each step, and the loss is a batch mean, so DDP's gradient average
    # equals its gradient up to float rounding.
    single_dir = tmp_path / "single"
    tiny_training.main(str(single_dir), steps, batch, accumulate=accumulate)

    rank0 = torch.load(ddp_dir / "params_rank0.pt")
    rank1 = torch.load(ddp_dir / "params_rank1.pt")
    single = torch.load(single_dir / "params_rank0.pt")
    torch.manual_seed(0)
    init = tiny_training.TinyAutoencoder().state_dict()
    for name in single:
        assert torch.equal(rank0[name], rank1[name]), name  # ranks stay in sync
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-5, atol=1e-6)
        assert (single[name] - init[name]).abs().max() > 1e-3, name  # training moved it

    # Only rank 0 wrote: every (step, scalar) appears once; the checkpoint holds both ranks' RNG.
    with open(ddp_dir / "scalars.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    counts = Counter((r[0], r[1]) for r in rows)
    assert len(counts) == 4 * steps and set(counts.values()) == {1}  # loss, lr, grad_norm, seconds
    ckpt = load_checkpoint(ddp_dir / "checkpoint.pt", tiny_training.TinyAutoencoder())
    assert ckpt.step == steps and len(ckpt.rng_states) == 2
    consumed = steps * accumulate * batch // 2  # per rank, micro-batches included
    assert ckpt.extra["sampler"] == {"seed": 0, "size": 24, "world_size": 2, "consumed": consumed}


@pytest.mark.parametrize("accumulate", [1, 3])
def test_accumulation_all_reduces_only_in_the_final_micro_batch(tmp_path: Path, accumulate: int) -> None:
    """A comm hook counts DDP's bucket all-reduces: one optimiser step's backward passes must
    reduce each bucket once, whatever ``accumulate`` is (the earlier micro-batches run under
    ``no_sync``), and the gradients must be the mean of the micro-batches' gradients."""
    from cutslots.train.precision import Precision

    assert not dist.is_initialized(), "another test left a process group behind"
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        oracle = copy.deepcopy(model)
        inputs = torch.randn(accumulate, 5, 4)  # (micro-batches, batch, features)
        net = torch.nn.parallel.DistributedDataParallel(model)
        reduced: list[int] = []

        def count(state, bucket):  # unannotated: DDP rejects the string annotations of this module
            reduced.append(bucket.index())
            future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
            future.set_result(bucket.buffer())  # one rank: the all-reduce is the identity
            return future

        net.register_comm_hook(None, count)
        batches = iter(inputs)

        def loss() -> tuple[torch.Tensor, float]:
            value = net(next(batches)).square().mean()
            return value, value.item()

        net(inputs[0]).sum().backward()  # one synchronised backward: every bucket once
        buckets = sorted(reduced)
        assert buckets
        reduced.clear()
        model.zero_grad(set_to_none=True)
        Precision("fp32", accumulate, torch.device("cpu")).backward(net, loss)
        assert sorted(reduced) == buckets  # not once per micro-batch
        (sum(oracle(x).square().mean() for x in inputs) / accumulate).backward()
        for p, q in zip(model.parameters(), oracle.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
    finally:
        dist.destroy_process_group()

"""The README's code example must run as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    head = scope["CutHead"](4, 8, 9)
    p = head(torch.randn(2, 4, 8, 9))
    assert p.shape == (2, 8, 9)
    p.sum().backward()
    assert head.edges.weight.grad is not None and head.edges.weight.grad.abs().sum() > 0
    assert scope["z"].shape == (8, 50)
    torch.testing.assert_close(
        torch.from_numpy(scope["A"] @ scope["z"].detach().double().numpy().T).float(),
        torch.ones(20, 8),
        atol=1e-4,
        rtol=0,
    )

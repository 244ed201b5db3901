"""Figures are Figure objects built without pyplot; save_figure writes them as PNG, figure_image
renders the same pixels for the loggers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from cutslots.plots import decomposition_figure, far_pair_figure, figure_image, save_figure


def _outputs(batch: int, slots: int, size: int, grouping: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {
        "masks": torch.softmax(torch.randn(batch, slots, size, size, generator=g), dim=1),
        "slot_recons": torch.rand(batch, slots, 3, size, size, generator=g),
        "recon": torch.rand(batch, 3, size, size, generator=g),
    }
    if grouping:
        out["grouping_masks"] = torch.softmax(torch.randn(batch, slots, size, size, generator=g), dim=1)
    return out


def test_decomposition_panels_show_the_inputs() -> None:
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = _outputs(5, 3, 8, grouping=True)
    fig = decomposition_figure(images, out, max_rows=2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 2 * (3 + 2)  # (image, decoder, grouping rows) x 2 images, K + 2 columns
    axes = np.array(fig.axes).reshape(6, 5)
    np.testing.assert_allclose(axes[3, 0].images[0].get_array(), images[1].permute(1, 2, 0).numpy(), rtol=0, atol=1e-6)
    mask, recon = out["masks"][1, 2], out["slot_recons"][1, 2]
    on_white = (mask[None] * recon + 1 - mask[None]).permute(1, 2, 0).numpy()  # slot 2 of image 1
    np.testing.assert_allclose(axes[3, 4].images[0].get_array(), on_white, rtol=0, atol=1e-6)
    np.testing.assert_allclose(axes[4, 4].images[0].get_array(), mask.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(axes[5, 4].images[0].get_array(), out["grouping_masks"][1, 2].numpy(), rtol=0, atol=1e-6)


def test_save_figure_writes_a_png_of_the_figure_size(tmp_path: Path) -> None:
    out = _outputs(2, 3, 8, grouping=False)
    fig = far_pair_figure(torch.rand(2, 3, 8, 8), out, (5, 20))
    path = save_figure(fig, tmp_path / "a" / "b" / "far.png", dpi=50)
    assert path == tmp_path / "a" / "b" / "far.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size == (round(1.2 * 5 * 50), round(2.6 * 50))  # figsize (1.2 (K + 2), 2.6) inches


def test_figure_image_is_the_saved_png(tmp_path: Path) -> None:
    images, out = torch.rand(2, 3, 8, 8), _outputs(2, 3, 8, grouping=True)
    pixels = figure_image(decomposition_figure(images, out), dpi=50)
    with Image.open(save_figure(decomposition_figure(images, out), tmp_path / "d.png", dpi=50)) as png:
        expected = np.asarray(png.convert("RGB"))
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    np.testing.assert_array_equal(pixels, expected)


def test_importing_the_plots_picks_no_backend() -> None:
    code = (
        "import sys, matplotlib; import cutslots.plots, cutslots.experiments.video, "
        "cutslots.experiments.cut_fidelity; print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())"
    )
    # A fresh interpreter: this one may have loaded pyplot through another test.
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split() == ["False", "svg"]

"""Tests for position embeddings, encoders, the spatial broadcast decoder and the autoencoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_squared_error
from torch import Tensor, nn

from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.nn.grouping import SlotAttentionGrouping
from cutslots.nn.position import LearnedPositionEmbedding, SoftPositionEmbed, build_grid
from oracles import overfit_one_batch, two_scenes

# ---------------------------------------------------------------- position embeddings


def test_build_grid_hand_computed() -> None:
    grid = build_grid(2, 3)
    x = np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
    y = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    expected = np.stack([x, y, 1 - x, 1 - y])[None]
    assert grid.shape == (1, 4, 2, 3)
    np.testing.assert_allclose(grid.numpy(), expected)
    np.testing.assert_allclose(build_grid(1, 1).numpy(), [[[[0.0]], [[0.0]], [[1.0]], [[1.0]]]])
    with pytest.raises(ValueError, match="w"):
        build_grid(2, 0)


def test_soft_position_embed_adds_projected_grid() -> None:
    embed = SoftPositionEmbed(2, (3, 4))
    with torch.no_grad():  # channel 0 <- x + 1, channel 1 <- 2 * (1 - y)
        embed.proj.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 2.0]]))
        embed.proj.bias.copy_(torch.tensor([1.0, 0.0]))
    features = torch.randn(2, 2, 3, 4)
    with torch.no_grad():
        out = embed(features)
    xs = np.array([0, 1 / 3, 2 / 3, 1])
    ys = np.array([0, 0.5, 1])
    np.testing.assert_allclose((out - features)[:, 0].numpy(), np.broadcast_to(xs + 1, (2, 3, 4)), atol=1e-6)
    np.testing.assert_allclose(
        (out - features)[:, 1].numpy(), np.broadcast_to(2 * (1 - ys)[:, None], (2, 3, 4)), atol=1e-6
    )
    with pytest.raises(ValueError, match="features"):
        embed(torch.randn(2, 2, 4, 3))
    with pytest.raises(ValueError, match="resolution"):
        SoftPositionEmbed(2, (3,))  # type: ignore[arg-type]


def test_learned_position_embedding() -> None:
    embed = LearnedPositionEmbedding(3, 4, 5)
    assert embed.embedding.shape == (1, 3, 4, 5)
    features = torch.randn(2, 3, 4, 5)
    out = embed(features)
    torch.testing.assert_close(out - features, embed.embedding.detach().expand(2, -1, -1, -1))
    out.sum().backward()
    torch.testing.assert_close(embed.embedding.grad, torch.full((1, 3, 4, 5), 2.0))
    with pytest.raises(ValueError, match="features"):
        embed(torch.randn(2, 3, 5, 4))


# ---------------------------------------------------------------- encoders


def test_cnn_encoder_is_four_5x5_convs_with_strided_first() -> None:
    torch.manual_seed(0)
    enc = CNNEncoder(channels=4, out_size=16)
    images = torch.rand(2, 3, 32, 32)
    # Oracle: the documented architecture rebuilt from nn.Conv2d layers with the same weights.
    convs = [enc.stem, *enc.convs]
    ref = nn.Sequential()
    for i, conv in enumerate(convs):
        layer = nn.Conv2d(conv.in_channels, 4, 5, stride=2 if i == 0 else 1, padding=2)
        layer.load_state_dict(conv.state_dict())
        ref.extend([layer, nn.ReLU()])
    with torch.no_grad():
        torch.testing.assert_close(enc(images), ref(images * 2 - 1))


@pytest.mark.parametrize(("size", "out_size"), [(128, 64), (64, 64), (32, 16), (32, 32)])
def test_encoder_output_shapes(size: int, out_size: int) -> None:
    images = torch.rand(1, 3, size, size)
    with torch.no_grad():
        assert CNNEncoder(4, out_size)(images).shape == (1, 4, out_size, out_size)
        assert ResNetEncoder(5, 2, out_size)(images).shape == (1, 5, out_size, out_size)


def test_resnet_encoder_structure() -> None:
    enc = ResNetEncoder(channels=6, blocks=3, out_size=8)
    assert len(enc.blocks) == 3
    # A block with zero second conv is the identity on non-negative inputs (relu(x + 0)).
    block = enc.blocks[0]
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
        x = torch.rand(1, 6, 8, 8)
        torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("encoder_cls", [CNNEncoder, ResNetEncoder])
@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 32, 32), r"images.*\(B, 3, H, W\).*\(3, 32, 32\)"),
        (torch.rand(1, 1, 32, 32), r"images.*\(1, 1, 32, 32\)"),
        (torch.ones(1, 3, 32, 32, dtype=torch.uint8), "images.*float.*uint8"),
        (torch.full((1, 3, 32, 32), 255.0), r"images.*\[0, 1\].*255"),
        (torch.full((1, 3, 32, 32), -0.5), r"images.*\[0, 1\].*-0.5"),
        (torch.full((1, 3, 32, 32), float("nan")), "images.*NaN"),
        (torch.rand(1, 3, 32, 24), "images.*32x24"),
        (torch.rand(1, 3, 48, 48), "images.*48x48"),
        (torch.rand(1, 3, 256, 256), "images.*256x256"),
    ],
)
def test_encoders_reject_bad_images(encoder_cls: type[nn.Module], images: Tensor, match: str) -> None:
    enc = encoder_cls(4, out_size=32) if encoder_cls is CNNEncoder else encoder_cls(4, 1, 32)
    with pytest.raises(ValueError, match=match):
        enc(images)


def test_encoder_accepts_rounding_noise_outside_unit_range() -> None:
    images = torch.rand(1, 3, 16, 16)
    images[0, 0, 0, 0] = 1.0 + 1e-5
    assert CNNEncoder(4, 16)(images).shape == (1, 4, 16, 16)


# ---------------------------------------------------------------- decoder


@pytest.mark.parametrize(
    ("out_size", "broadcast", "hidden_layers"), [(32, 8, 1), (64, 8, 1), (128, 8, 1), (32, 32, 1), (32, 32, 3)]
)
def test_decoder_shapes_and_masks(out_size: int, broadcast: int, hidden_layers: int) -> None:
    torch.manual_seed(0)
    dec = SpatialBroadcastDecoder(
        slot_dim=6, out_size=out_size, broadcast=broadcast, channels=4, hidden_layers=hidden_layers
    )
    convs = [m for m in dec.net if isinstance(m, nn.ConvTranspose2d)]
    strided = [m for m in convs if m.stride == (2, 2)]
    assert len(strided) == int(np.log2(out_size // broadcast))  # one doubling per factor 2
    assert sum(m.stride == (1, 1) and m.kernel_size == (5, 5) for m in convs) == hidden_layers
    with torch.no_grad():
        recons, masks, image = dec(torch.randn(2, 3, 6))
    assert recons.shape == (2, 3, 3, out_size, out_size)
    assert masks.shape == (2, 3, out_size, out_size)
    assert image.shape == (2, 3, out_size, out_size)
    assert bool((masks >= 0).all())
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, out_size, out_size))
    expected = np.einsum("bkhw,bkchw->bchw", masks.numpy(), recons.numpy())
    np.testing.assert_allclose(image.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_decoder_pointwise_head_is_a_per_pixel_mlp() -> None:
    # The 1x1 layers act on each pixel's hidden vector alone: recompute them as matrix products.
    torch.manual_seed(2)
    dec = SpatialBroadcastDecoder(
        slot_dim=5, out_size=16, broadcast=16, channels=4, pointwise_layers=2, pointwise_channels=7
    )
    pointwise = [m for m in dec.net if isinstance(m, nn.Conv2d) and not isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in pointwise] == [(4, 7, (1, 1)), (7, 7, (1, 1))]
    slots = torch.randn(2, 3, 5)
    with torch.no_grad():
        grid = dec.position(slots.reshape(6, 5, 1, 1).expand(-1, -1, 16, 16))
        hidden = dec.net[:2](grid)  # (6, 4, 16, 16): the 5x5 layer and its ReLU
        x = hidden.permute(0, 2, 3, 1).double()  # (6, 16, 16, 4)
        for layer in pointwise:
            x = torch.relu(x @ layer.weight.double()[:, :, 0, 0].T + layer.bias.double())
        out = dec.net[-1]
        expected = F.conv_transpose2d(
            x.permute(0, 3, 1, 2), out.weight.double(), out.bias.double(), padding=1
        )  # (6, 4, 16, 16)
        recons, masks, _ = dec(slots)
    torch.testing.assert_close(recons.double(), expected.reshape(2, 3, 4, 16, 16)[:, :, :3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        masks.double(), torch.softmax(expected.reshape(2, 3, 4, 16, 16)[:, :, 3], dim=1), rtol=1e-5, atol=1e-6
    )


def test_decoder_single_slot_owns_every_pixel() -> None:
    dec = SpatialBroadcastDecoder(slot_dim=5, out_size=16, broadcast=4, channels=4)
    with torch.no_grad():
        recons, masks, image = dec(torch.randn(3, 1, 5))
    torch.testing.assert_close(masks, torch.ones(3, 1, 16, 16))
    torch.testing.assert_close(image, recons[:, 0])


def test_decoder_decodes_slots_independently() -> None:
    torch.manual_seed(1)
    dec = SpatialBroadcastDecoder(slot_dim=4, out_size=16, broadcast=8, channels=4)
    slots = torch.randn(1, 3, 4)
    with torch.no_grad():
        recons, _, _ = dec(slots)
        recons_alone, _, _ = dec(slots[:, 1:2])
    torch.testing.assert_close(recons[:, 1:2], recons_alone)


def test_decoder_bad_arguments() -> None:
    with pytest.raises(ValueError, match="out_size"):
        SpatialBroadcastDecoder(4, out_size=48, broadcast=8)
    with pytest.raises(ValueError, match="out_size"):
        SpatialBroadcastDecoder(4, out_size=4, broadcast=8)
    with pytest.raises(ValueError, match="slot_dim"):
        SpatialBroadcastDecoder(0)
    with pytest.raises(ValueError, match="hidden_layers must be a positive int, got 0"):
        SpatialBroadcastDecoder(4, out_size=16, broadcast=8, hidden_layers=0)
    with pytest.raises(ValueError, match="pointwise_layers must be a non-negative int, got -1"):
        SpatialBroadcastDecoder(4, out_size=16, broadcast=8, pointwise_layers=-1)
    with pytest.raises(ValueError, match="pointwise_channels must be a positive int, got 0"):
        SpatialBroadcastDecoder(4, out_size=16, broadcast=8, pointwise_layers=1, pointwise_channels=0)
    dec = SpatialBroadcastDecoder(4, out_size=16, broadcast=8, channels=4)
    with pytest.raises(ValueError, match=r"slots.*\(B, K, 4\)"):
        dec(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="slots"):
        dec(torch.randn(2, 0, 4))
    with pytest.raises(TypeError, match="slots"):
        dec(torch.ones(2, 3, 4, dtype=torch.long))


# ---------------------------------------------------------------- autoencoder


def _baseline(encoder: nn.Module, num_slots: int = 2) -> SlotAutoencoder:
    grouping = SlotAttentionGrouping(16, num_slots, slot_dim=16, iters=2, resolution=(16, 16), hidden_dim=32)
    return SlotAutoencoder(encoder, grouping, SpatialBroadcastDecoder(16, out_size=32, broadcast=8, channels=16))


def test_autoencoder_outputs_and_loss() -> None:
    torch.manual_seed(0)
    model = _baseline(CNNEncoder(16, 16), num_slots=3)
    images = two_scenes()
    out = model(images)
    assert set(out) == {"recon", "slot_recons", "masks", "slots", "grouping_masks"}
    assert out["recon"].shape == (2, 3, 32, 32)
    assert out["slot_recons"].shape == (2, 3, 3, 32, 32)
    assert out["masks"].shape == (2, 3, 32, 32)
    assert out["slots"].shape == (2, 3, 16)
    assert out["grouping_masks"].shape == (2, 3, 16, 16)
    torch.testing.assert_close(out["grouping_masks"].sum(dim=1), torch.ones(2, 16, 16))
    expected = mean_squared_error(images.numpy().ravel(), out["recon"].detach().numpy().ravel())
    assert model.loss(images, out).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("encoder", ["cnn", "resnet"])
def test_overfits_one_batch(encoder: str) -> None:
    torch.manual_seed(0)
    enc = CNNEncoder(16, 16) if encoder == "cnn" else ResNetEncoder(16, 2, 16)
    model = _baseline(enc)
    initial, final, mean_baseline = overfit_one_batch(model, two_scenes(), 200)
    assert final < 0.5 * initial
    assert final < mean_baseline


class _PooledGrouping(nn.Module):
    """Minimal third-party grouping: K slots from fixed vertical stripes of the features."""

    def __init__(self, num_slots: int, extra: dict | None = None) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.extra = extra or {}

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        b, _, h, w = features.shape
        masks = torch.zeros(b, self.num_slots, h, w)
        for k, cols in enumerate(torch.arange(w).chunk(self.num_slots)):
            masks[:, k, :, cols] = 1.0
        slots = torch.einsum("bkhw,bchw->bkc", masks, features) / masks.sum((2, 3))[..., None]
        return {"slots": slots, "masks": masks, **self.extra}


def test_custom_grouping_plugs_in_and_extras_pass_through() -> None:
    aux = torch.tensor(0.5)
    model = SlotAutoencoder(
        CNNEncoder(8, 8),
        _PooledGrouping(2, {"aux_loss": aux}),
        SpatialBroadcastDecoder(8, out_size=16, broadcast=8, channels=4),
    )
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out["slots"].shape == (1, 2, 8)
    assert out["grouping_aux_loss"] is aux
    torch.testing.assert_close(out["grouping_masks"][0, 0, :, :4], torch.ones(8, 4))
    torch.testing.assert_close(out["grouping_masks"][0, 0, :, 4:], torch.zeros(8, 4))


class _Fixed(nn.Module):
    def __init__(self, out: object) -> None:
        super().__init__()
        self.out = out

    def forward(self, features: Tensor) -> object:
        return self.out


@pytest.mark.parametrize(
    ("grouping_out", "error", "match"),
    [
        (torch.zeros(1, 2, 8), TypeError, "dict"),
        ({"masks": torch.zeros(1, 2, 8, 8)}, ValueError, "slots"),
        ({"slots": torch.zeros(2, 8)}, ValueError, r"slots.*\(B, K, D\)"),
        ({"slots": torch.zeros(1, 2, 8), "masks": torch.zeros(1, 3, 8, 8)}, ValueError, "masks"),
    ],
)
def test_bad_grouping_output(grouping_out: object, error: type[Exception], match: str) -> None:
    decoder = SpatialBroadcastDecoder(8, out_size=16, broadcast=8, channels=4)
    model = SlotAutoencoder(CNNEncoder(8, 8), _Fixed(grouping_out), decoder)
    with pytest.raises(error, match=match):
        model(torch.rand(1, 3, 16, 16))


def test_autoencoder_bad_images_and_mismatched_decoder() -> None:
    decoder = SpatialBroadcastDecoder(8, out_size=32, broadcast=8, channels=4)  # 32x32 output for 16x16 images
    model = SlotAutoencoder(CNNEncoder(8, 8), _PooledGrouping(2), decoder)
    with pytest.raises(ValueError, match=r"images.*\[0, 1\]"):
        model(torch.full((1, 3, 16, 16), 2.0))
    with pytest.raises(ValueError, match="decoder output"):
        model(torch.rand(1, 3, 16, 16))
    images = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="recon"):
        model.loss(images, {"recon": F.interpolate(images, size=8)})
    with pytest.raises(ValueError, match="recon"):
        model.loss(images, {})

"""Tests for the groupings (cutslots.nn.grouping) and the model builders (cutslots.models.builders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from cutslots.config import ConfigError, ModelConfig
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.builders import build_autoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.nn.grouping import CutSlotGrouping, RandomWalkerGrouping, SlotAttentionGrouping
from cutslots.nn.partition import BackgroundKPartition, KPartition
from cutslots.nn.slot_attention import SlotAttention
from oracles import overfit_one_batch, two_scenes
from test_random_walker import oracle

C, H, W = 4, 6, 5

# Small widths keep every model here fast on one CPU thread.
TINY = {"slot_dim": 8, "encoder": {"channels": 8}, "decoder": {"channels": 8}}


def tiny_model(kind: str, encoder: str = "cnn", **grouping: object) -> ModelConfig:
    return ModelConfig(
        **{
            **TINY,
            "num_slots": 3,
            "encoder": {"kind": encoder, "channels": 8},
            "grouping": {"kind": kind, "mlp_hidden": 16, **grouping},
        }
    )


def _grouping(background_slot: bool, k: int = 3, seed: int = 0) -> CutSlotGrouping:
    torch.manual_seed(seed)
    return CutSlotGrouping(
        C,
        k,
        slot_dim=7,
        height=H,
        width=W,
        gamma=0.5,
        background_slot=background_slot,
        partition_hidden=8,
        mlp_hidden=16,
    )


def _features(batch: int = 2) -> Tensor:
    return torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("background_slot", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "masked_mean"])
def test_slots_are_mlp_of_spatial_means_of_masked_positioned_features(background_slot: bool, pooling: str) -> None:
    grouping = _grouping(background_slot)
    grouping.pooling = pooling
    partition_cls = BackgroundKPartition if background_slot else KPartition
    assert isinstance(grouping.partition, partition_cls)
    features = _features()
    with torch.no_grad():
        out = grouping(features)
    assert set(out) == {"slots", "masks"}
    assert out["slots"].shape == (2, 3, 7) and out["masks"].shape == (2, 3, H, W)
    masks = out["masks"].numpy()
    np.testing.assert_allclose(masks.sum(1), 1.0, atol=1e-6)
    # Oracle in numpy: (features + learned position) masked, averaged over H x W, then the MLP.
    x = features.numpy() + grouping.position.embedding.detach().numpy()
    pooled = np.einsum("bkhw,bchw->bkc", masks, x)
    if pooling == "mean":
        pooled /= H * W
    else:  # over each part: divided by its mask mass plus one pixel
        pooled /= masks.sum(axis=(2, 3))[..., None] + 1.0
    lin1, lin2 = grouping.mlp[0], grouping.mlp[2]
    hidden = np.maximum(pooled @ lin1.weight.detach().numpy().T + lin1.bias.detach().numpy(), 0)
    slots = hidden @ lin2.weight.detach().numpy().T + lin2.bias.detach().numpy()
    np.testing.assert_allclose(out["slots"].numpy(), slots, rtol=1e-4, atol=1e-5)


def test_position_embedding_moves_the_partition() -> None:
    # The edge-weight CNN sees features + position, so the same features at another
    # "position" are cut differently (Alg. 2 adds the embedding before partitioning).
    grouping = _grouping(True)
    features = _features(1)
    with torch.no_grad():
        before = grouping(features)["masks"]
        grouping.position.embedding.add_(torch.randn_like(grouping.position.embedding))
        after = grouping(features)["masks"]
    assert float((before - after).abs().max()) > 1e-3


def test_gradients_reach_position_cnn_and_mlp() -> None:
    grouping = _grouping(True)
    out = grouping(_features())
    target = torch.randn(out["masks"].shape, generator=torch.Generator().manual_seed(5))
    (out["slots"].square().sum() + (out["masks"] * target).sum()).backward()
    for name, param in grouping.named_parameters():
        assert param.grad is not None and float(param.grad.abs().max()) > 0, name


@pytest.mark.parametrize("encoder", ["cnn", "resnet"])
def test_cut_and_slot_attention_models_share_encoder_and_decoder(encoder: str) -> None:
    cut = build_autoencoder(tiny_model("cut", encoder, hidden=8), 32)
    baseline = build_autoencoder(tiny_model("slot_attention", encoder), 32)
    assert isinstance(cut, SlotAutoencoder) and isinstance(baseline, SlotAutoencoder)
    assert isinstance(cut.grouping, CutSlotGrouping)
    assert isinstance(baseline.grouping, SlotAttentionGrouping)
    encoder_cls = CNNEncoder if encoder == "cnn" else ResNetEncoder
    for model in (cut, baseline):
        assert isinstance(model.encoder, encoder_cls) and model.encoder.out_size == 16
        assert isinstance(model.decoder, SpatialBroadcastDecoder) and model.decoder.out_size == 32
    for part in ("encoder", "decoder"):
        shapes = {k: v.shape for k, v in getattr(cut, part).state_dict().items()}
        assert shapes == {k: v.shape for k, v in getattr(baseline, part).state_dict().items()}
    with torch.no_grad():
        out = cut(two_scenes()[:1])
    assert out["recon"].shape == (1, 3, 32, 32)
    assert out["slots"].shape == (1, 3, 8)
    assert out["grouping_masks"].shape == (1, 3, 16, 16)
    torch.testing.assert_close(out["grouping_masks"].sum(1), torch.ones(1, 16, 16))


def test_default_builds_use_the_paper_grid() -> None:
    cut = build_autoencoder(ModelConfig(), 128)
    assert cut.encoder.out_size == 64 and cut.encoder.channels == 64
    qp = cut.grouping.partition.cuts.qp
    assert (qp.height, qp.width, qp.gamma) == (64, 64, 1.0)  # the paper's gamma 0.5, doubled
    assert cut.grouping.num_slots == 12 and cut.grouping.slot_dim == 64
    assert isinstance(cut.grouping.partition, BackgroundKPartition)
    resnet = ModelConfig(encoder={"kind": "resnet"}, grouping={"kind": "slot_attention"})
    assert build_autoencoder(resnet, 128).encoder.channels == 100


def test_cut_autoencoder_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = build_autoencoder(tiny_model("cut", hidden=16).model_copy(update={"slot_dim": 16}), 32)
    initial, final, mean_baseline = overfit_one_batch(model, two_scenes(), 150)
    assert final < 0.5 * initial
    assert final < mean_baseline


@pytest.mark.parametrize(
    ("model", "image_size", "match"),
    [
        ({}, 48, "image_size.*48"),
        ({}, 8, "image_size.*8"),
        ({}, 0, "image_size"),
        ({"decoder": {"broadcast": 16}}, 24, "image_size.*24"),
    ],
)
def test_builder_bad_image_sizes(model: dict, image_size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_autoencoder(ModelConfig(**model), image_size)


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"encoder": {"kind": "vit"}}, "encoder.kind"),
        ({"num_slots": 1}, "num_slots"),
        ({"num_slots": 0, "grouping": {"kind": "cut", "background_slot": False}}, "num_slots"),
        ({"slot_dim": 0}, "slot_dim"),
        ({"grouping": {"kind": "cut", "gamma": -1.0}}, "grouping.gamma"),
        ({"grouping": {"kind": "cut", "bg_temperature": 0.0}}, "grouping.bg_temperature"),
        ({"grouping": {"kind": "cut", "background_slot": "yes"}}, "grouping.background_slot"),
        ({"grouping": {"kind": "slot_attention", "gamma": 1.0}}, "grouping.gamma"),
    ],
)
def test_model_config_bad_values_name_the_key(model: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig(**model)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_slots": 1}, ValueError, "num_slots"),
        ({"num_slots": 0, "background_slot": False}, ValueError, "num_slots"),
        ({"slot_dim": 0}, ValueError, "slot_dim"),
        ({"gamma": -1.0}, ValueError, "gamma"),
        ({"bg_temperature": 0.0}, ValueError, "bg_temperature"),
        ({"background_slot": "yes"}, TypeError, "background_slot"),
    ],
)
def test_cut_grouping_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        CutSlotGrouping(C, **{"num_slots": 3, "slot_dim": 7, "height": H, "width": W, **kwargs})


def test_grouping_rejects_features_off_its_grid() -> None:
    grouping = _grouping(True)
    with pytest.raises(ValueError, match=rf"features.*\(B, {C}, {H}, {W}\)"):
        grouping(torch.randn(1, C, W, H))
    model = SlotAutoencoder(
        CNNEncoder(C, 8), grouping, SpatialBroadcastDecoder(7, out_size=16, broadcast=8, channels=4)
    )
    with pytest.raises(ValueError, match="features"):
        model(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("use", ["none", "pool_only"])
def test_without_position_in_the_cut_the_partition_sees_the_raw_features(use: str) -> None:
    torch.manual_seed(0)
    grouping = CutSlotGrouping(
        C, 3, slot_dim=7, height=H, width=W, gamma=0.5, partition_hidden=8, mlp_hidden=16, position_embedding=use
    )
    assert any("position" in name for name, _ in grouping.named_parameters()) == (use == "pool_only")
    features = _features()
    if use == "pool_only":
        with torch.no_grad():
            grouping.position.embedding.normal_()
    with torch.no_grad():
        out = grouping(features)
        masks = grouping.partition(features).masks
    torch.testing.assert_close(out["masks"], masks)
    # The slots pool what was not cut: features plus the position embedding, if any.
    x = features.numpy()
    if use == "pool_only":
        x = x + grouping.position.embedding.detach().numpy()
    pooled = np.einsum("bkhw,bchw->bkc", masks.numpy(), x) / (H * W)
    with torch.no_grad():
        slots = grouping.mlp(torch.from_numpy(pooled).float())
    torch.testing.assert_close(out["slots"], slots, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="position_embedding"):
        CutSlotGrouping(C, 3, slot_dim=7, height=H, width=W, gamma=0.5, position_embedding=True)


def test_bad_pooling_is_named() -> None:
    with pytest.raises(ValueError, match="pooling"):
        CutSlotGrouping(C, 3, slot_dim=7, height=H, width=W, gamma=0.5, pooling="max")


# ------------------------------------------------------------------ random-walker groupings


def test_random_walker_grouping_masks_are_the_walker_of_its_cnn_scores():
    torch.manual_seed(0)
    grouping = RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, hidden=8, mlp_hidden=16).double()
    features = _features().double()
    with torch.no_grad():
        out = grouping(features)
        positioned = features + grouping.position.embedding
        scores = torch.nn.functional.softplus(grouping.cnn(positioned))  # (B, 2 + k, H, W)
    want, _ = oracle(scores[:, :2], scores[:, 2:] + grouping.unary_floor)  # SciPy's sparse LU
    torch.testing.assert_close(out["masks"], want, rtol=0, atol=1e-6)
    pooled = np.einsum("bkhw,bchw->bkc", want.numpy(), positioned.numpy()) / (H * W)
    with torch.no_grad():
        torch.testing.assert_close(out["slots"], grouping.mlp(torch.from_numpy(pooled)), rtol=1e-6, atol=1e-6)


def test_softmax_unaries_are_the_parts_softmax_of_the_cnn_scores():
    torch.manual_seed(0)
    grouping = RandomWalkerGrouping(
        C, 3, slot_dim=7, height=H, width=W, hidden=8, unaries="softmax", temperature=0.3
    ).double()
    features = _features().double()
    with torch.no_grad():
        masks = grouping(features)["masks"]
        scores = grouping.cnn(features + grouping.position.embedding)  # (B, 2 + k, H, W)
    edges = torch.nn.functional.softplus(scores[:, :2])
    unaries = np.exp(scores[:, 2:].numpy() / 0.3)
    unaries /= unaries.sum(1, keepdims=True)  # the softmax over parts, by hand
    want, _ = oracle(edges, torch.from_numpy(unaries))
    torch.testing.assert_close(masks, want, rtol=0, atol=1e-6)


def test_balanced_unaries_give_every_part_mean_one():
    torch.manual_seed(0)
    grouping = RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, hidden=8, unaries="balanced").double()
    features = _features().double()
    with torch.no_grad():
        masks = grouping(features)["masks"]
        scores = grouping.cnn(features + grouping.position.embedding)  # (B, 2 + k, H, W)
    edges = torch.nn.functional.softplus(scores[:, :2])
    unaries = np.logaddexp(0, scores[:, 2:].numpy()) + grouping.unary_floor  # softplus, by hand
    unaries /= unaries.sum((2, 3), keepdims=True) / (H * W)
    want, _ = oracle(edges, torch.from_numpy(unaries))
    torch.testing.assert_close(masks, want, rtol=0, atol=1e-6)


def test_bad_unaries_are_named():
    with pytest.raises(ValueError, match="unaries"):
        RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, unaries="relu")
    with pytest.raises(ValueError, match="temperature"):
        RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, unaries="softmax", temperature=0.0)


def test_diffusion_edges_start_at_edge_init():
    grouping = SlotAttentionGrouping(
        C, 3, slot_dim=8, resolution=(H, W), iters=2, diffusion="random_walker", edge_init=0.05
    )
    assert grouping.edges is not None
    with torch.no_grad():
        grouping.edges[-1].weight.zero_()  # the bias alone: softplus(bias) must be edge_init
        edges = torch.nn.functional.softplus(grouping.edges(_features()))
    torch.testing.assert_close(edges, torch.full_like(edges, 0.05), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="edge_init"):
        SlotAttentionGrouping(C, 3, slot_dim=8, resolution=(H, W), diffusion="random_walker", edge_init=-1.0)


@pytest.mark.parametrize("diffusion", ["none", "random_walker"])
def test_gradients_reach_every_parameter_of_the_walker_groupings(diffusion):
    torch.manual_seed(0)
    for grouping in (
        RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, hidden=8, mode="irls", iterations=1),
        RandomWalkerGrouping(C, 3, slot_dim=7, height=H, width=W, hidden=8, unaries="softmax"),
        SlotAttentionGrouping(C, 3, slot_dim=8, resolution=(H, W), iters=2, diffusion=diffusion),
    ):
        out = grouping(_features())
        target = torch.randn(out["masks"].shape, generator=torch.Generator().manual_seed(5))
        (out["slots"].square().sum() + (out["masks"] * target).sum()).backward()
        for name, param in grouping.named_parameters():
            assert param.grad is not None and float(param.grad.abs().max()) > 0, name


def test_slot_attention_diffuses_every_iteration_and_updates_with_the_result():
    torch.manual_seed(0)
    attention = SlotAttention(3, 8, iters=4, hidden_dim=16)
    inputs, noise = torch.randn(2, 30, 8), torch.randn(2, 3, 8)
    seen = []

    def record(a):
        seen.append(a)
        return a

    plain = attention(inputs, noise)
    recorded = attention(inputs, noise, diffuse=record)
    assert len(seen) == 4 and all(a.shape == (2, 3, 30) for a in seen)
    torch.testing.assert_close(recorded[0], plain[0], rtol=0, atol=0)  # identity: the same computation
    uniform = attention(inputs, noise, diffuse=lambda a: torch.full_like(a, 1 / 3))
    # Every slot then takes the mean of all values: slot differences come from the noise alone.
    assert not torch.allclose(uniform[0], plain[0])
    torch.testing.assert_close(uniform[1], torch.full((2, 3, 30), 1 / 3))


def test_diffused_attention_is_a_partition_of_the_grid():
    torch.manual_seed(0)
    grouping = SlotAttentionGrouping(C, 3, slot_dim=8, resolution=(H, W), iters=2, diffusion="random_walker")
    with torch.no_grad():
        masks = grouping(_features())["masks"]
    assert masks.shape == (2, 3, H, W) and float(masks.min()) >= 0
    torch.testing.assert_close(masks.sum(1), torch.ones(2, H, W), rtol=0, atol=1e-4)


def test_builders_make_the_random_walker_groupings():
    rw = build_autoencoder(tiny_model("random_walker", hidden=8, mode="irls", iterations=2), 32)
    assert isinstance(rw.grouping, RandomWalkerGrouping)
    assert (rw.grouping.walker.mode, rw.grouping.walker.iterations) == ("irls", 2)
    sa = build_autoencoder(tiny_model("slot_attention", diffusion="random_walker", edge_hidden=4), 32)
    assert isinstance(sa.grouping, SlotAttentionGrouping) and sa.grouping.edges is not None
    assert sa.grouping.edges[0].out_channels == 4

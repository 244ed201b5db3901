"""Image evaluation: the grouping's own metrics, its image dependence and static baseline, and
the same fixed-layout references for the decoder masks.

Oracles: scikit-learn's ARI on argmax labels, a Hungarian mIoU written here with SciPy, and
NumPy float64 means of the masks a fixed lookup model returns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score
from torch import Tensor, nn

from cutslots.experiments.evaluation import (
    DECODER_REFERENCE_METRICS,
    DISCOVERY_MARGIN,
    GROUPING_METRICS,
    MARGIN_FLOOR,
    decoder_verdict,
    evaluate,
    grouping_verdict,
    top_two_margin,
)

N, K, S = 6, 3, 8  # images, slots, side


def scenes(seed: int = 0) -> list[dict[str, Tensor]]:
    """Images whose pixel (0, 0) of channel 0 encodes their index; labels 0..2 per image."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(N):
        image = torch.from_numpy(rng.random((3, S, S))).float()
        image[0, 0, 0] = i / 255
        mask = torch.from_numpy(rng.integers(0, 3, (S, S)))
        mask[:2] = 0  # some background in every image
        items.append({"image": image, "mask": mask})
    return items


class Lookup(nn.Module):
    """Returns fixed decoder and grouping masks per image index (grouping at full size, so no
    upsampling stands between the masks and their argmax); ``noise`` adds fresh random logits
    at every call, as Slot Attention's slot init draws noise."""

    def __init__(self, grouping: np.ndarray, noise: bool = False, decoder: np.ndarray | None = None) -> None:
        super().__init__()
        self.grouping = torch.from_numpy(grouping)  # (N, K, S, S) float64
        # Decoder masks (N, K, S, S); None: the grouping masks with the slots reversed.
        self.decoder = None if decoder is None else torch.from_numpy(decoder)
        self.noise = noise
        self.unused = nn.Parameter(torch.zeros(1))
        self.seen: list[Tensor] = []

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        index = (images[:, 0, 0, 0] * 255).round().long()
        grouping = self.grouping[index].float()
        if self.noise:
            grouping = torch.softmax(grouping + torch.randn_like(grouping), dim=1)
        self.seen.append(grouping)
        masks = grouping.flip(1) if self.decoder is None else self.decoder[index].float()
        return {"recon": images, "masks": masks, "grouping_masks": grouping}


def hungarian_miou(true: np.ndarray, pred: np.ndarray, num_segments: int) -> float:
    true_ids = np.unique(true)
    iou = np.array(
        [
            [
                np.logical_and(true == t, pred == p).sum() / np.logical_or(true == t, pred == p).sum()
                for p in range(num_segments)
            ]
            for t in true_ids
        ]
    )
    rows, cols = linear_sum_assignment(-iou)
    return iou[rows, cols].sum() / len(true_ids)


def sklearn_fg(true: np.ndarray, pred: np.ndarray) -> float:
    return adjusted_rand_score(true[true > 0], pred[true > 0])


def random_grouping(seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(N, K, S, S)) * 3
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_grouping_metrics_static_baseline_and_image_dependence_against_numpy_and_sklearn():
    items = scenes()
    grouping = random_grouping(1)
    # Image 0 and 1 share a mask map, the others are random: the mean is not uniform.
    grouping[1] = grouping[0]
    result = evaluate(Lookup(grouping), items, batch_size=4)
    per = result["per_image"]
    assert set(GROUPING_METRICS) | set(DECODER_REFERENCE_METRICS) <= set(per)
    true = np.stack([item["mask"].numpy() for item in items])
    labels = grouping.astype(np.float32).argmax(1)
    mean = grouping.astype(np.float32).astype(np.float64).mean(0)  # what the model returned, in float64
    static = mean.argmax(0)
    for i in range(N):
        assert per["grouping_ari_fg"][i] == pytest.approx(sklearn_fg(true[i], labels[i]), abs=1e-12)
        assert per["grouping_ari"][i] == pytest.approx(
            adjusted_rand_score(true[i].ravel(), labels[i].ravel()), abs=1e-12
        )
        assert per["grouping_miou"][i] == pytest.approx(hungarian_miou(true[i], labels[i], K), abs=1e-12)
        assert per["static_ari_fg"][i] == pytest.approx(sklearn_fg(true[i], static), abs=1e-12)
        assert per["static_miou"][i] == pytest.approx(hungarian_miou(true[i], static, K), abs=1e-12)
        # The decoder masks are the grouping masks with the slots reversed: same partition,
        # and the same dataset-mean partition.
        assert per["ari_fg"][i] == pytest.approx(per["grouping_ari_fg"][i], abs=1e-12)
        assert per["decoder_static_ari_fg"][i] == pytest.approx(sklearn_fg(true[i], static), abs=1e-12)
        assert per["decoder_static_ari"][i] == pytest.approx(
            adjusted_rand_score(true[i].ravel(), static.ravel()), abs=1e-12
        )
        assert per["decoder_static_miou"][i] == pytest.approx(hungarian_miou(true[i], K - 1 - static, K), abs=1e-12)
    ordered = np.sort(grouping.astype(np.float32), axis=1)  # (N, K, S, S), ascending over slots
    np.testing.assert_allclose(per["grouping_margin"], (ordered[:, -1] - ordered[:, -2]).mean((1, 2)), rtol=1e-6)
    dependence = np.abs(grouping.astype(np.float32) - mean).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(per["image_dependence"], dependence, rtol=1e-6)
    np.testing.assert_allclose(per["decoder_dependence"], dependence, rtol=1e-6)  # a permutation of the slots
    np.testing.assert_allclose(result["mean_grouping_masks"].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(result["mean_decoder_masks"].numpy(), mean[::-1], rtol=1e-6)
    assert result["summary"]["image_dependence"]["n"] == N


def test_a_grouping_that_ignores_its_input_is_its_own_static_baseline():
    same = np.repeat(random_grouping(2)[:1], N, axis=0)
    result = evaluate(Lookup(same), scenes(), batch_size=4)
    per, summary = result["per_image"], result["summary"]
    np.testing.assert_allclose(per["image_dependence"], 0.0, atol=1e-7)
    np.testing.assert_allclose(per["decoder_dependence"], 0.0, atol=1e-7)
    for key in ("ari", "ari_fg", "miou"):
        np.testing.assert_array_equal(per[f"grouping_{key}"], per[f"static_{key}"])
        np.testing.assert_array_equal(per[key], per[f"decoder_static_{key}"])
    assert grouping_verdict(summary).startswith("not discovering objects")
    assert decoder_verdict(summary).startswith("a fixed layout, not separating objects")


def test_a_decoder_that_paints_the_true_segments_beats_its_fixed_layout():
    """Decoder masks one-hot on each image's true labels (different in every image): ARI-FG 1,
    while their dataset mean has one partition for all images (scored with scikit-learn). Image
    i's masks are scaled by 2^i, so no two labels' sums over the images can tie at a pixel."""
    items = scenes()
    true = np.stack([item["mask"].numpy() for item in items])  # (N, S, S) labels 0..2
    onehot = (true[:, None] == np.arange(K)[None, :, None, None]).astype(np.float64)  # (N, K, S, S)
    decoder = onehot * 2.0 ** np.arange(N)[:, None, None, None] / 2**N
    result = evaluate(Lookup(random_grouping(5), decoder=decoder), items, batch_size=4)
    per = result["per_image"]
    np.testing.assert_allclose(per["ari_fg"], 1.0, atol=1e-12)
    static = decoder.mean(0).argmax(0)  # (S, S)
    for i in range(N):
        assert per["decoder_static_ari_fg"][i] == pytest.approx(sklearn_fg(true[i], static), abs=1e-12)
    dependence = np.abs(decoder - decoder.mean(0)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(per["decoder_dependence"], dependence, rtol=1e-6)
    assert per["decoder_static_ari_fg"].mean() < 1 - DISCOVERY_MARGIN
    assert decoder_verdict(result["summary"]).startswith("beats its fixed layout by")


def test_noisy_grouping_gets_the_same_draws_in_both_passes_and_leaves_the_rng_alone():
    model = Lookup(random_grouping(3), noise=True)
    torch.manual_seed(5)
    result = evaluate(model, scenes(), batch_size=4, max_images=5)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))  # evaluation did not move the caller's RNG
    assert result["num_images"] == 5
    first, second = torch.cat(model.seen[:2]), torch.cat(model.seen[2:])
    assert first.shape[0] == 5 and torch.equal(first, second)
    mean = first.double().mean(0)
    np.testing.assert_allclose(
        result["per_image"]["image_dependence"], (first.double() - mean).abs().mean(dim=(1, 2, 3)).numpy(), rtol=1e-9
    )


def test_models_without_grouping_masks_get_decoder_metrics_only():
    class DecoderOnly(Lookup):
        def forward(self, images: Tensor) -> dict[str, Tensor]:
            out = super().forward(images)
            del out["grouping_masks"]
            return out

    result = evaluate(DecoderOnly(random_grouping(4)), scenes(), batch_size=4)
    assert set(result["per_image"]) == {"ari", "ari_fg", "miou", "mse", *DECODER_REFERENCE_METRICS}
    assert "mean_grouping_masks" not in result and "mean_decoder_masks" in result
    assert grouping_verdict(result["summary"]) is None


@pytest.mark.parametrize(
    "grouping, static, start",
    [
        (0.40, 0.45, "not discovering objects: grouping ARI-FG 40.0 % vs 45.0 %"),
        (0.45, 0.45, "not discovering objects"),
        (0.50, 0.45, "not clearly discovering objects: grouping ARI-FG 50.0 % vs 45.0 %"),
        (0.45 + DISCOVERY_MARGIN + 0.01, 0.45, "beats its static baseline by 11.0 points"),
    ],
)
def test_grouping_verdict_hand_cases(grouping, static, start):
    summary = {"grouping_ari_fg": {"mean": grouping}, "static_ari_fg": {"mean": static}}
    assert grouping_verdict(summary).startswith(start)


@pytest.mark.parametrize(
    "decoder, static, start",
    [
        (0.40, 0.45, "a fixed layout, not separating objects: decoder ARI-FG 40.0 % vs 45.0 %"),
        (0.45, 0.45, "a fixed layout, not separating objects"),
        (0.50, 0.45, "mostly a fixed layout: decoder ARI-FG 50.0 % vs 45.0 %"),
        (0.45 + DISCOVERY_MARGIN + 0.01, 0.45, "beats its fixed layout by 11.0 points"),
    ],
)
def test_decoder_verdict_hand_cases(decoder, static, start):
    assert decoder_verdict({"ari_fg": {"mean": decoder}}) is None  # results from before the reference
    summary = {"ari_fg": {"mean": decoder}, "decoder_static_ari_fg": {"mean": static}}
    assert decoder_verdict(summary).startswith(start)


def test_top_two_margin_hand_cases():
    uniform = torch.full((1, 4, 2, 2), 0.25)
    hard = torch.zeros(1, 3, 1, 2)
    hard[0, 0, 0, 0] = hard[0, 2, 0, 1] = 1.0
    half = torch.tensor([0.6, 0.3, 0.1]).view(1, 3, 1, 1)
    assert top_two_margin(uniform).tolist() == [0.0]
    assert top_two_margin(hard).tolist() == [1.0]
    assert top_two_margin(half).tolist() == pytest.approx([0.3])
    assert top_two_margin(torch.full((2, 1, 3, 3), 0.5)).tolist() == [0.5, 0.5]  # K = 1: the mask itself


def test_nearly_uniform_masks_are_not_discovering_whatever_their_ari():
    summary = {
        "grouping_ari_fg": {"mean": 0.45 + 2 * DISCOVERY_MARGIN},
        "static_ari_fg": {"mean": 0.45},
        "grouping_margin": {"mean": MARGIN_FLOOR / 2},
    }
    assert grouping_verdict(summary).startswith("not discovering objects: the grouping masks are nearly uniform")
    summary["grouping_margin"]["mean"] = MARGIN_FLOOR * 2
    assert grouping_verdict(summary).startswith("beats its static baseline")

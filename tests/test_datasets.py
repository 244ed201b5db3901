"""Dataset readers against tiny files written in the published formats (dataset_fixtures).

Expected outputs are computed independently with PIL (the reference readers' crop/resize)
and numpy from the arrays the fixtures wrote; TFRecord framing is checked against the
``tfrecord`` package's writer and reader.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tfrecord import example_pb2
from tfrecord.reader import tfrecord_iterator
from tfrecord.writer import TFRecordWriter
from torch.utils.data import DataLoader, IterableDataset

import dataset_fixtures as fx
from cutslots.data.clevr import ClevrWithMasks
from cutslots.data.clevrtex import ClevrTex
from cutslots.data.errors import DatasetFormatError
from cutslots.data.movi import MoviA
from cutslots.data.tfrecord_io import (
    ExampleView,
    Shard,
    current_shard,
    frame_record,
    iter_records,
    masked_crc32c,
    write_tfrecord,
)

PIL_TOLERANCE = 1.01 / 255  # PIL's two rounded uint8 passes vs exact float bilinear
R = 128


def pil_image(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Reference: PIL crop + bilinear resize, as float (R, R, 3) in [0, 1]."""
    image = Image.fromarray(np.ascontiguousarray(array)).crop(box)
    return np.array(image.resize((R, R), Image.BILINEAR)) / 255.0


def pil_labels(labels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Reference: PIL crop + nearest resize of a uint8 label map."""
    image = Image.fromarray(labels.astype(np.uint8)).crop(box)
    return np.array(image.resize((R, R), Image.NEAREST))


def assert_image_close(ours: torch.Tensor, expected: np.ndarray) -> None:
    assert ours.dtype == torch.float32 and ours.shape == (3, R, R)
    assert np.abs(ours.permute(1, 2, 0).numpy() - expected).max() <= PIL_TOLERANCE


# ================================================================ TFRecord framing


def _tfrecord_package_file(path: Path, n: int) -> list[bytes]:
    """Write ``n`` examples with the tfrecord package's writer; return their payloads."""
    writer = TFRecordWriter(str(path))
    payloads = []
    for i in range(n):
        datum = {"x": (list(range(i + 1)), "int"), "name": (b"rec%d\x00" % i, "byte")}
        writer.write(datum)
        payloads.append(TFRecordWriter.serialize_tf_example(datum))
    writer.close()
    return payloads


def test_masked_crc_and_framing_are_byte_exact(tmp_path: Path) -> None:
    assert masked_crc32c(b"123456789") == int.from_bytes(TFRecordWriter.masked_crc(b"123456789"), "little")
    payloads = _tfrecord_package_file(tmp_path / "ref.tfrecord", 3)
    write_tfrecord(tmp_path / "ours.tfrecord", payloads)
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "ref.tfrecord").read_bytes()
    assert frame_record(b"")[:8] == bytes(8)  # length 0, little-endian uint64


def test_reader_reads_reference_files_and_reference_reads_ours(tmp_path: Path) -> None:
    payloads = _tfrecord_package_file(tmp_path / "ref.tfrecord", 4)
    assert [d for _, d in iter_records(tmp_path / "ref.tfrecord")] == payloads
    # GZIP: the whole framed stream compressed, as TensorFlow's GZIP option writes it.
    (tmp_path / "ref.gz").write_bytes(gzip.compress((tmp_path / "ref.tfrecord").read_bytes()))
    assert [d for _, d in iter_records(tmp_path / "ref.gz", "gzip")] == payloads
    write_tfrecord(tmp_path / "ours.gz", payloads, compression="gzip")
    theirs = tfrecord_iterator(str(tmp_path / "ours.gz"), compression_type="gzip")
    assert [bytes(view) for view in theirs] == payloads


def test_keep_and_stop_select_records_and_count_them(tmp_path: Path) -> None:
    payloads = [bytes([i]) * (i + 5) for i in range(7)]
    for compression, name in ((None, "f.tfrecord"), ("gzip", "f.gz")):
        write_tfrecord(tmp_path / name, payloads, compression)
        records = iter_records(tmp_path / name, compression, keep=lambda i: i % 3 == 1)
        kept = []
        with pytest.raises(StopIteration) as done:
            while True:
                kept.append(next(records))
        assert kept == [(1, payloads[1]), (4, payloads[4])] and done.value.value == 7
        assert [i for i, _ in iter_records(tmp_path / name, compression, stop=3)] == [0, 1, 2]
        with pytest.raises(DatasetFormatError, match="only 7 records"):
            list(iter_records(tmp_path / name, compression, stop=8))


def test_corrupt_and_truncated_records_name_file_and_record(tmp_path: Path) -> None:
    payloads = [b"a" * 10, b"b" * 20, b"c" * 30]
    path = tmp_path / "f.tfrecord"
    write_tfrecord(path, payloads)
    raw = bytearray(path.read_bytes())
    second = len(frame_record(payloads[0]))

    corrupt = bytearray(raw)
    corrupt[second + 12 + 3] ^= 0xFF  # a data byte of record 1
    (tmp_path / "corrupt.tfrecord").write_bytes(corrupt)
    with pytest.raises(DatasetFormatError, match=r"corrupt\.tfrecord: record 1: corrupt data"):
        list(iter_records(tmp_path / "corrupt.tfrecord"))

    bad_length = bytearray(raw)
    bad_length[second] ^= 0x01  # the length of record 1
    (tmp_path / "length.tfrecord").write_bytes(bad_length)
    with pytest.raises(DatasetFormatError, match=r"length\.tfrecord: record 1: corrupt length"):
        list(iter_records(tmp_path / "length.tfrecord"))

    third = len(raw) - len(frame_record(payloads[2]))
    for cut, what in ((len(raw) - 5, "data"), (third + 7, "header")):
        (tmp_path / "short.tfrecord").write_bytes(raw[:cut])
        message = rf"short\.tfrecord: record 2: truncated.*{what}"
        with pytest.raises(DatasetFormatError, match=message):
            list(iter_records(tmp_path / "short.tfrecord"))
        # Also when another reader owns the damaged record (it is seeked over, not read).
        with pytest.raises(DatasetFormatError, match="record 2: truncated"):
            list(iter_records(tmp_path / "short.tfrecord", keep=lambda i: i == 0))

    packed = gzip.compress(bytes(raw))
    (tmp_path / "short.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DatasetFormatError, match=r"short\.gz: record \d"):
        list(iter_records(tmp_path / "short.gz", "gzip"))
    with pytest.raises(DatasetFormatError, match=r"f\.tfrecord: record 0: damaged GZIP"):
        list(iter_records(path, "gzip"))
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        list(iter_records(tmp_path / "nope.tfrecord"))
    with pytest.raises(ValueError, match="compression"):
        list(iter_records(path, "zlib"))  # type: ignore[arg-type]


# ================================================================ tf.train.Example parsing


def test_example_view_agrees_with_protobuf() -> None:
    example = example_pb2.Example()
    feature = example.features.feature
    one_bytes = [b"\x07", b"\x00", b"\xff", b"\x00"]  # NULs, including a trailing one
    feature["codes"].bytes_list.value.extend(one_bytes)
    feature["pngs"].bytes_list.value.extend([b"\x89PNG...", b""])
    feature["f"].float_list.value.extend([0.5, -2.25, 3e8])
    feature["i"].int64_list.value.extend([-1, 2**40])
    record = example.SerializeToString()
    parsed = example_pb2.Example.FromString(record).features.feature

    view = ExampleView(record, "rec")
    assert sorted(view.keys()) == ["codes", "f", "i", "pngs"]
    codes = np.frombuffer(b"".join(parsed["codes"].bytes_list.value), np.uint8)
    np.testing.assert_array_equal(view.uint8_values("codes", 4), codes)
    assert view.bytes_values("pngs") == list(parsed["pngs"].bytes_list.value)
    floats = np.array(parsed["f"].float_list.value, np.float32)
    np.testing.assert_array_equal(view.float_values("f"), floats)
    assert view.int64_values("i", 2).tolist() == list(parsed["i"].int64_list.value)

    with pytest.raises(DatasetFormatError, match="rec: feature 'pngs' does not hold one byte"):
        view.uint8_values("pngs")
    with pytest.raises(DatasetFormatError, match="rec: feature 'codes' has 4 values, expected 5"):
        view.uint8_values("codes", 5)
    with pytest.raises(DatasetFormatError, match="'f' is a float_list, expected int64_list"):
        view.int64_values("f")
    with pytest.raises(DatasetFormatError, match="rec: missing feature 'image'"):
        view.uint8_values("image")
    with pytest.raises(DatasetFormatError, match="not a tf.train.Example"):
        ExampleView(b"\x0a\xff\xff", "rec")


# ================================================================ sharding


def test_shards_partition_record_indices() -> None:
    for n in range(1, 5):
        for i in range(23):
            owners = [w for w in range(n) if Shard(w, n).owns(i)]
            assert owners == [i % n]
    with pytest.raises(ValueError, match="index < count"):
        Shard(2, 2)


class _WhoAmI(IterableDataset):
    def __iter__(self):
        shard = current_shard()
        yield torch.tensor([shard.index, shard.count])


def test_current_shard_in_dataloader_workers() -> None:
    assert current_shard() == Shard(0, 1)
    loader = DataLoader(_WhoAmI(), batch_size=None, num_workers=2)
    assert sorted(tuple(t.tolist()) for t in loader) == [(0, 2), (1, 2)]


# ================================================================ CLEVR with masks

CLEVR_BOX = (64, 29, 256, 221)  # rows 29:221, cols 64:256


@pytest.fixture(scope="module")
def clevr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    scenes = [fx.clevr_scene(rng, k) for k in (3, 9, 5, 10)]
    root = tmp_path_factory.mktemp("clevr")
    fx.write_clevr_with_masks(root, scenes)
    return root, scenes


def _check_clevr_item(item: dict, scene: dict[str, np.ndarray]) -> None:
    assert_image_close(item["image"], pil_image(scene["image"], CLEVR_BOX))
    labels = scene["mask"][..., 0].argmax(axis=0)  # (240, 320), 0 = background
    assert item["mask"].dtype == torch.int64
    np.testing.assert_array_equal(item["mask"].numpy(), pil_labels(labels, CLEVR_BOX))
    np.testing.assert_array_equal(item["visibility"].numpy(), scene["visibility"])


def test_clevr_reads_back_scenes_after_slot_attention_crop(clevr) -> None:
    root, scenes = clevr
    items = list(ClevrWithMasks(root, splits={"all": (0, None)}, split="all"))
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    for item, scene in zip(items, scenes):
        _check_clevr_item(item, scene)
    assert len(items[1]["mask"].unique()) > 3  # several objects survive the crop


def test_clevr_split_ranges_and_object_filter(clevr) -> None:
    root, scenes = clevr
    splits = {"train": (0, 2), "val": (2, 3), "test": (3, None)}
    got = {s: [x["index"] for x in ClevrWithMasks(root, split=s, splits=splits)] for s in splits}
    assert got == {"train": [0, 1], "val": [2], "test": [3]}
    visible = [int(s["visibility"][1:].sum()) for s in scenes]
    limit = sorted(visible)[1]  # a scene with exactly `limit` objects is kept
    kept = ClevrWithMasks(root, split="all", splits={"all": (0, None)}, max_objects=limit)
    assert [x["index"] for x in kept] == [i for i, n in enumerate(visible) if n <= limit]
    assert len(set(visible)) == 4  # so exactly two scenes pass
    # The default split needs 70,000+ records: a short file is an error, not a short split.
    with pytest.raises(DatasetFormatError, match="only 4 records, expected at least 85000"):
        list(ClevrWithMasks(root, split="val"))


def test_clevr_two_workers_give_each_record_once(clevr) -> None:
    root, scenes = clevr
    dataset = ClevrWithMasks(root, split="all", splits={"all": (1, None)})
    items = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert sorted(item["index"] for item in items) == [1, 2, 3]
    for item in items:
        _check_clevr_item(item, scenes[item["index"]])


def test_clevr_errors(clevr, tmp_path: Path) -> None:
    root, scenes = clevr
    message = r"(?s)missing_root.*clevr_with_masks_train\.tfrecords.*multi_object_datasets"
    with pytest.raises(FileNotFoundError, match=message):
        ClevrWithMasks(tmp_path / "missing_root")
    with pytest.raises(FileNotFoundError, match=r"empty[/\\]clevr_with_masks_train\.tfrecords"):
        (tmp_path / "empty").mkdir()
        ClevrWithMasks(tmp_path / "empty")
    with pytest.raises(ValueError, match="split must be one of"):
        ClevrWithMasks(root, split="training")

    # Truncated GZIP file.
    data = (root / "clevr_with_masks_train.tfrecords").read_bytes()
    short = tmp_path / "short"
    short.mkdir()
    (short / "clevr_with_masks_train.tfrecords").write_bytes(data[: len(data) * 2 // 3])
    message = r"short[/\\]clevr_with_masks_train\.tfrecords: record \d"
    with pytest.raises(DatasetFormatError, match=message):
        list(ClevrWithMasks(short, split="all", splits={"all": (0, None)}))

    # A CRC-corrupt record inside an intact GZIP stream.
    plain = bytearray(gzip.decompress(data))
    plain[len(plain) - 100] ^= 0x01
    (short / "clevr_with_masks_train.tfrecords").write_bytes(gzip.compress(bytes(plain)))
    with pytest.raises(DatasetFormatError, match="record 3: corrupt data"):
        list(ClevrWithMasks(short, split="all", splits={"all": (0, None)}))

    # Wrong image size in an otherwise well-formed record.
    small = {**scenes[0], "image": scenes[0]["image"][:120, :160]}
    bad = tmp_path / "bad"
    fx.write_clevr_with_masks(bad, [scenes[1], small])
    message = r"bad[/\\].*: record 1: feature 'image' has 57600 values, expected 230400"
    with pytest.raises(DatasetFormatError, match=message):
        list(ClevrWithMasks(bad, split="all", splits={"all": (0, None)}))


# ================================================================ ClevrTex

CLEVRTEX_BOX = (64, 24, 256, 216)  # int(0.8 * 240) = 192, centred on 320x240


def _stem(root: Path, index: int) -> str:
    """Published path of image ``index`` of ``clevrtex_full`` without its suffix."""
    return str(root / "clevrtex_full" / str(index // 1000) / f"CLEVRTEX_full_{index:06d}")


@pytest.fixture(scope="module")
def clevrtex(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("clevrtex")
    return root, fx.write_clevrtex(root, "full", 12, rgba=(3,))


def test_clevrtex_official_split_over_sorted_indices(clevrtex) -> None:
    root, _ = clevrtex
    # N = 12: test [0, int(1.2)) = [0, 1), val [1, int(2.4)) = [1, 2), train [2, 12).
    assert ClevrTex(root, split="test").indices == [0]
    assert ClevrTex(root, split="val").indices == [1]
    assert ClevrTex(root, split="train").indices == list(range(2, 12))
    assert len(ClevrTex(root, split=None)) == 12  # the stray _depth_0001.png files are ignored
    assert ClevrTex(root / "clevrtex_full", split=None).indices == list(range(12))


def test_clevrtex_items_match_pil_crop_and_resize(clevrtex) -> None:
    root, written = clevrtex
    dataset = ClevrTex(root, split=None)
    for index in (0, 3, 11):  # 3 is an RGBA render: alpha must be dropped
        render, flat = written[index]
        item = dataset[index]
        assert item["index"] == index
        assert_image_close(item["image"], pil_image(render[..., :3], CLEVRTEX_BOX))
        np.testing.assert_array_equal(item["mask"].numpy(), pil_labels(flat, CLEVRTEX_BOX))
        meta = json.loads(Path(_stem(root, index) + ".json").read_text())
        assert item["num_objects"] == len(meta["objects"])
    batch = next(iter(DataLoader(ClevrTex(root, split="train"), batch_size=4)))
    assert batch["image"].shape == (4, 3, R, R) and batch["mask"].dtype == torch.int64
    with pytest.raises(IndexError):
        dataset[12]


def test_clevrtex_evaluation_only_variants(tmp_path: Path) -> None:
    fx.write_clevrtex(tmp_path, "camo", 18, seed=1)
    fx.write_clevrtex(tmp_path, "outd", 3, seed=2)
    # N = 18: int(1.8) = 1 and int(3.6) = 3 (truncation, not rounding).
    assert ClevrTex(tmp_path, "camo", split="test").indices == [0]
    assert ClevrTex(tmp_path, "camo", split="val").indices == [1, 2]
    assert ClevrTex(tmp_path, "outd", split="test").indices == [0, 1, 2]  # outd has no split
    for variant, split in (("camo", "train"), ("outd", "train"), ("outd", "val")):
        with pytest.raises(ValueError, match="'outd'|'camo'"):
            ClevrTex(tmp_path, variant, split=split)
    with pytest.raises(ValueError, match="variant must be one of"):
        ClevrTex(tmp_path, "clevr")


def test_clevrtex_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)clevrtex_full.*robots\.ox\.ac\.uk"):
        ClevrTex(tmp_path)
    (tmp_path / "clevrtex_full").mkdir()
    with pytest.raises(DatasetFormatError, match="no renders"):
        ClevrTex(tmp_path)

    fx.write_clevrtex(tmp_path, "full", 5)
    for suffix in (".png", "_flat.png", ".json", "_depth_0001.png"):
        Path(_stem(tmp_path, 2) + suffix).unlink()
    with pytest.raises(DatasetFormatError, match=r"missing index 2 .*CLEVRTEX_full_000002\.png"):
        ClevrTex(tmp_path, split=None)

    Path(_stem(tmp_path, 4) + "_flat.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"missing file .*CLEVRTEX_full_000004_flat\.png"):
        ClevrTex(tmp_path, split=None)

    shutil.rmtree(tmp_path / "clevrtex_full")
    fx.write_clevrtex(tmp_path, "full", 3)
    (tmp_path / "clevrtex_full" / "1").mkdir()
    shutil.move(_stem(tmp_path, 1) + ".png", tmp_path / "clevrtex_full" / "1")
    message = r"misplaced, expected at .*[/\\]0[/\\]CLEVRTEX_full_000001\.png"
    with pytest.raises(DatasetFormatError, match=message):
        ClevrTex(tmp_path, split=None)


def test_clevrtex_file_errors_name_the_file(tmp_path: Path) -> None:
    fx.write_clevrtex(tmp_path, "full", 4)
    dataset = ClevrTex(tmp_path, split=None)
    render = Path(_stem(tmp_path, 0) + ".png")
    render.write_bytes(render.read_bytes()[:500])  # truncated PNG
    with pytest.raises(DatasetFormatError, match=r"CLEVRTEX_full_000000\.png: not a readable PNG"):
        dataset[0]
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(_stem(tmp_path, 1) + ".png")
    with pytest.raises(DatasetFormatError, match=r"CLEVRTEX_full_000001\.png: size .*\(120, 160\)"):
        dataset[1]
    Path(_stem(tmp_path, 2) + ".json").write_text(json.dumps({"objects": []}))
    with pytest.raises(DatasetFormatError, match=r"000002_flat\.png: object id \d+ but the JSON"):
        dataset[2]
    rgb_mask = Image.fromarray(np.zeros((240, 320, 3), np.uint8))
    rgb_mask.save(_stem(tmp_path, 3) + "_flat.png")
    with pytest.raises(DatasetFormatError, match=r"000003_flat\.png: PNG mode 'RGB'"):
        dataset[3]


# ================================================================ MOVi-A

MOVI_BOX = (13, 13, 115, 115)  # int(0.8 * 128) = 102, centred on 128x128


@pytest.fixture(scope="module")
def movi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("movi")
    shards = [[fx.movi_clip(rng, 4, 128, n) for n in (3, 5)] for _ in range(2)]
    fx.write_movi_a(root, {"train": shards, "validation": [[fx.movi_clip(rng, 4, 128, 4)]]})
    return root, [clip for shard in shards for clip in shard]


def _check_clip(video: torch.Tensor, mask: torch.Tensor, clip: tuple[np.ndarray, np.ndarray]) -> None:
    frames, segmentations = clip
    assert video.shape == (len(frames), 3, R, R) and mask.dtype == torch.int64
    for t in range(len(frames)):
        assert_image_close(video[t], pil_image(frames[t], MOVI_BOX))
        np.testing.assert_array_equal(mask[t].numpy(), pil_labels(segmentations[t], MOVI_BOX))


def test_movi_clips_across_shards(movi) -> None:
    root, clips = movi
    items = list(MoviA(root, split="train"))
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    for item in items:
        _check_clip(item["video"], item["mask"], clips[item["index"]])
    assert [item["index"] for item in MoviA(root, split="validation")] == [0]


def test_movi_frame_pairs(movi) -> None:
    root, clips = movi
    pairs = list(MoviA(root, split="train", mode="pairs"))
    assert [(p["index"], p["frame"]) for p in pairs] == [(i, t) for i in range(4) for t in range(3)]
    for pair in pairs[4:7]:  # clip 1, frames (0, 1), (1, 2), (2, 3)
        video, seg = clips[pair["index"]]
        t = pair["frame"]
        assert pair["frames"].shape == (2, 3, R, R)
        _check_clip(pair["frames"], pair["mask"], (video[t : t + 2], seg[t : t + 2]))


def test_movi_two_workers_give_each_record_once(movi) -> None:
    root, clips = movi
    items = list(DataLoader(MoviA(root, split="train"), batch_size=None, num_workers=2))
    assert sorted(item["index"] for item in items) == [0, 1, 2, 3]
    for item in items:
        _check_clip(item["video"], item["mask"], clips[item["index"]])


def test_movi_layout_errors(movi, tmp_path: Path) -> None:
    root, _ = movi
    with pytest.raises(FileNotFoundError, match=r"(?s)movi_a[/\\]128x128[/\\]1\.0\.0.*kubric"):
        MoviA(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"movi_a[/\\]256x256"):
        MoviA(root, source_resolution=256)
    message = r"no shards movi_a-test\..*splits found: \['train', 'validation'\]"
    with pytest.raises(DatasetFormatError, match=message):
        MoviA(root, split="test")
    with pytest.raises(ValueError, match="mode must be one of"):
        MoviA(root, mode="video")

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    folder = copy / "movi_a" / "128x128" / "1.0.0"
    (folder / "movi_a-train.tfrecord-00000-of-00002").unlink()
    message = r"missing shard .*movi_a-train\.tfrecord-00000-of-00002"
    with pytest.raises(DatasetFormatError, match=message):
        MoviA(copy, split="train")
    (folder / "features.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"1\.0\.0[/\\]features\.json"):
        MoviA(copy, split="validation")


def test_movi_record_errors_name_file_record_and_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    video, seg = fx.movi_clip(rng, 3, 128, 2)
    example = example_pb2.Example.FromString(fx.movi_example(video, seg))
    frames = example.features.feature["video"].bytes_list.value
    frames[1] = frames[1][: len(frames[1]) // 2]  # truncated PNG
    folder = fx.write_movi_a(tmp_path / "png", {"train": [[]]})
    shard = folder / "movi_a-train.tfrecord-00000-of-00001"
    write_tfrecord(shard, [fx.movi_example(video, seg), example.SerializeToString()])
    message = r"tfrecord-00000-of-00001: record 1: video frame 1: not a readable PNG"
    with pytest.raises(DatasetFormatError, match=message):
        list(MoviA(tmp_path / "png"))

    # 64x64 frames filed under the 128x128 config.
    fx.write_movi_a(tmp_path / "size", {"train": [[fx.movi_clip(rng, 3, 64, 2)]]}, side=128)
    message = r"record 0: video frame 0 has size \(64, 64\), expected \(128, 128\)"
    with pytest.raises(DatasetFormatError, match=message):
        list(MoviA(tmp_path / "size"))

    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(DatasetFormatError, match=r"tfrecord-00000-of-00001: record 1: truncated"):
        list(MoviA(tmp_path / "png"))

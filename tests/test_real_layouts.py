"""Real downloads read right: the places the owners' files really sit, generated, read back.

VIPSeg's split from the owners' lists (``VIPSeg/<split>.txt`` beside ``VIPSeg_720P/``, or the split
jsons), never every video by accident; PPR10K's download (``masks_360p`` beside the image folder) and the
official split folders (``train/source_aug*``, ``val/source``); MVImgNet masks matched by exact stem, never
stretched, turned with their frame's EXIF orientation, LA PNGs by their alpha; frame numbers (capture order)
for the stage-1 view window.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import balanced, ingest, read_records
from PIL import Image

from imprint.cli import main
from imprint.ingest.base import LayoutError
from imprint.ingest.sample import generate_mvimgnet, generate_ppr10k, generate_vipseg
from imprint.masks import decode_mask_png

# ------------------------------------------------------------------------------------------------ VIPSeg


def _lists(folder: Path) -> dict[str, list[str]]:
    return {s: (folder / f"{s}.txt").read_text().split() for s in ("train", "val")}


def _groups(out: Path, source: str) -> set[str]:
    return set(read_records(out, source).column("group_id").to_pylist())


def test_vipseg_takes_the_split_from_the_lists_beside_vipseg_720p(tmp_path):
    """As the archive and the owners' scripts keep them: VIPSeg/{train,val}.txt, VIPSeg/VIPSeg_720P/."""
    root = generate_vipseg(tmp_path / "gen", seed=3, n_videos=3, split_files="beside")
    lists = _lists(root / "VIPSeg")
    assert not (root / "VIPSeg" / "VIPSeg_720P" / "train.txt").exists() and lists["val"]
    report = ingest("vipseg", root, tmp_path / "train")
    assert _groups(tmp_path / "train", "vipseg") == set(lists["train"]) and balanced(report)
    # the converted folder given itself as --root (the paper recipe's vipseg root): the lists beside it
    ingest("vipseg", root / "VIPSeg" / "VIPSeg_720P", tmp_path / "val", split="val")
    assert _groups(tmp_path / "val", "vipseg") == set(lists["val"])
    assert report["read"]["videos_from"] == str(root / "VIPSeg" / "train.txt")


def test_vipseg_takes_the_split_from_the_split_json(tmp_path):
    root = generate_vipseg(tmp_path / "gen", seed=4, n_videos=3, split_files="json")
    vip = root / "VIPSeg_720P"
    assert not list(root.rglob("*.txt")) and (vip / "panoptic_gt_VIPSeg_train.json").is_file()
    import json

    want = {s: {v["video_id"] for v in json.loads((vip / f"panoptic_gt_VIPSeg_{s}.json").read_text())["videos"]}
            for s in ("train", "val")}
    assert want["train"] and want["val"] and not want["train"] & want["val"]
    for split in ("train", "val"):
        report = ingest("vipseg", root, tmp_path / split, split=split)
        assert _groups(tmp_path / split, "vipseg") == want[split] and balanced(report)


def test_vipseg_without_a_split_list_stops_naming_both_places(tmp_path, capsys):
    root = generate_vipseg(tmp_path / "gen", seed=5, n_videos=3, split_files="none")
    with pytest.raises(LayoutError) as err:
        ingest("vipseg", root, tmp_path / "out")
    message = str(err.value)
    assert str(root / "train.txt") in message and "panoptic_gt_VIPSeg_train.json" in message
    assert "split=all" in message
    assert not (tmp_path / "out" / "records").exists()
    assert main(["ingest", "vipseg", "--root", str(root), "--out", str(tmp_path / "cli"), "--executor", "local"]) == 1
    assert "panoptic_gt_VIPSeg_train.json" in capsys.readouterr().err
    # every video, validation too, only when asked for
    ingest("vipseg", root, tmp_path / "all", split="all")
    assert len(_groups(tmp_path / "all", "vipseg")) == 4


def test_vipseg_list_naming_no_video_is_refused(tmp_path):
    root = generate_vipseg(tmp_path / "gen", seed=6, n_videos=2, split_files="beside")
    (root / "VIPSeg" / "train.txt").write_text("0_notAVideo\n1_notOneEither\n")
    with pytest.raises(LayoutError, match="none of them is in"):
        ingest("vipseg", root, tmp_path / "out")


# ------------------------------------------------------------------------------------------------ PPR10K


def _frames(out: Path, source: str) -> set[str]:
    return set(read_records(out, source).column("frame_name").to_pylist())


def test_ppr10k_official_split_folders_source_aug_for_train_source_for_val(tmp_path):
    root = generate_ppr10k(tmp_path / "gen", seed=1, n_groups=3, n_photos=2, layout="split")
    assert not (root / "train" / "source").exists() and (root / "val" / "source").is_dir()
    originals = {p.stem for p in (root / "train" / "source_aug").glob("*.tif") if p.stem.count("_") == 1}
    copies = [p for p in (root / "train" / "source_aug").glob("*.tif") if p.stem.count("_") == 2]
    val = {p.stem for p in (root / "val" / "source").glob("*.tif")}
    assert originals and copies and val
    train = ingest("ppr10k", root, tmp_path / "train", ppr10k_images="source")
    assert _frames(tmp_path / "train", "ppr10k") == originals, "the originals of source_aug, never the copies"
    val_report = ingest("ppr10k", root, tmp_path / "val", ppr10k_images="source", split="val")
    assert _frames(tmp_path / "val", "ppr10k") == val
    ingest("ppr10k", root, tmp_path / "all", ppr10k_images="source", split="all")
    assert _frames(tmp_path / "all", "ppr10k") == originals | val
    # the retouched targets: each split its own
    ingest("ppr10k", root, tmp_path / "target", split="train")
    assert _frames(tmp_path / "target", "ppr10k") == originals
    # the report says which folders were read
    assert train["read"]["photos"] == ["train/source_aug"] and train["read"]["masks"] == ["train/masks"]
    assert train["read"]["augmented_copies_skipped"] == len(copies) and balanced(train)
    assert val_report["read"]["photos"] == ["val/source"] and val_report["read"]["split_by"] == ["folder val/"]


def test_ppr10k_download_with_masks_360p_beside_the_images(tmp_path):
    gen = generate_ppr10k(tmp_path / "gen", seed=2, n_groups=3, n_photos=2, layout="download")
    root = gen / "PPR10K-dataset"
    images = root / "train_val_images_tif_360p"
    assert (root / "masks_360p").is_dir() and not (images / "masks").exists()
    train = {p.stem for p in (images / "target_a").glob("*.tif") if int(p.stem.split("_")[0]) < 1356}
    report = ingest("ppr10k", root, tmp_path / "a")
    assert _frames(tmp_path / "a", "ppr10k") == train and report["kept"] == len(train) and balanced(report)
    # the image folder itself as --root: the masks beside it
    beside = ingest("ppr10k", images, tmp_path / "b", ppr10k_images="source")
    assert _frames(tmp_path / "b", "ppr10k") == train
    for r in read_records(tmp_path / "b", "ppr10k").to_pylist():
        mask = np.asarray(Image.open(root / "masks_360p" / f"{r['frame_name']}.png")) > 0
        assert np.array_equal(decode_mask_png(r["mask"]), mask)
    assert report["read"]["photos"] == ["train_val_images_tif_360p/target_a"]
    assert report["read"]["masks"] == ["masks_360p"] and report["read"]["photos_of_other_split"] == 2
    assert beside["read"]["masks"] == [str(root / "masks_360p")]


def test_ppr10k_mask_of_another_aspect_is_a_size_mismatch_a_larger_one_is_scaled(tmp_path):
    root = generate_ppr10k(tmp_path / "gen", seed=3, n_groups=1, n_photos=3)
    masks = sorted((root / "masks").glob("*.png"))
    full = np.asarray(Image.open(masks[0]))
    Image.fromarray(np.kron(full, np.ones((2, 2), np.uint8))).save(masks[0])  # masks_full: 2x, same aspect
    cropped = np.asarray(Image.open(masks[1]))[:, : full.shape[1] * 3 // 4]
    Image.fromarray(cropped).save(masks[1])  # another aspect ratio: never stretched
    report = ingest("ppr10k", root, tmp_path / "out")
    assert report["dropped"].get("size_mismatch") == 1 and balanced(report)
    assert any(masks[1].name in f["error"] for f in report["failures"] if f["reason"] == "size_mismatch")
    rows = {r["frame_name"]: r for r in read_records(tmp_path / "out", "ppr10k").to_pylist()}
    assert np.array_equal(decode_mask_png(rows[masks[0].stem]["mask"]), full > 0)


# ------------------------------------------------------------------------------------------------ MVImgNet


def _capture_masks(out: Path) -> dict[tuple[str, str], np.ndarray]:
    return {(r["group_id"], r["frame_name"]): decode_mask_png(r["mask"])
            for r in read_records(out, "mvimgnet").to_pylist()}


def test_mvimgnet_alpha_beside_the_frame_matched_by_exact_stem_only(tmp_path):
    """AnyDoor's copy: RGBA ``<stem>_rgba.png`` beside unpadded ``<stem>.jpg``: frame 1 never takes 10's mask."""
    root = generate_mvimgnet(tmp_path / "gen", seed=1, n_classes=1, n_instances=1, n_frames=12,
                             mask_layout="beside", padded=False)
    images = next(root.glob("*/*/images"))
    assert (images / "1_rgba.png").is_file() and (images / "10_rgba.png").is_file()
    report = ingest("mvimgnet", root, tmp_path / "out")
    got = _capture_masks(tmp_path / "out")
    assert report["kept"] == 12 and balanced(report)
    for (_, name), mask in got.items():
        alpha = np.asarray(Image.open(images / f"{name}_rgba.png"))[..., 3]
        assert np.array_equal(mask, alpha > 127), name
    assert report["read"]["masks_by_variant"] == {"beside": 12}
    # a frame whose own mask is gone has none (never 10's, 11's or 12's)
    (images / "1_rgba.png").unlink()
    report = ingest("mvimgnet", root, tmp_path / "out2")
    assert report["dropped"] == {"missing_mask": 1} and ("1" not in {n for _, n in _capture_masks(tmp_path / "out2")})


def test_mvimgnet_mask_tree_beside_the_classes(tmp_path):
    root = generate_mvimgnet(tmp_path / "gen", seed=2, n_classes=1, n_instances=2, n_frames=6, mask_layout="tree")
    assert not list(root.glob("*/*/masks")) and len(list((root / "masks").rglob("*.jpg.png"))) == 12
    report = ingest("mvimgnet", root, tmp_path / "out")
    assert report["kept"] == 12
    for (group, name), mask in _capture_masks(tmp_path / "out").items():
        soft = np.asarray(Image.open(root / "masks" / group / f"{name}.jpg.png"))
        assert np.array_equal(mask, soft > 127)
    assert report["read"]["masks_by_variant"] == {"masks tree <name>.png": 12}


def test_mvimgnet_mask_of_another_aspect_is_a_counted_size_mismatch(tmp_path):
    root = generate_mvimgnet(tmp_path / "gen", seed=3, n_classes=1, n_instances=1, n_frames=6)
    masks = sorted(root.glob("*/*/masks/*.png"))
    soft = np.asarray(Image.open(masks[2]))
    Image.fromarray(np.ascontiguousarray(soft[:, : soft.shape[1] * 2 // 3])).save(masks[2])
    Image.fromarray(cv2.resize(np.asarray(Image.open(masks[3])), None, fx=0.5, fy=0.5,
                               interpolation=cv2.INTER_AREA)).save(masks[3])  # half size, same aspect: scaled
    report = ingest("mvimgnet", root, tmp_path / "out")
    assert report["dropped"] == {"size_mismatch": 1} and report["kept"] == 5 and balanced(report)
    assert masks[2].stem not in {n for _, n in _capture_masks(tmp_path / "out")}


def test_mvimgnet_la_mask_is_read_from_its_alpha(tmp_path):
    root = generate_mvimgnet(tmp_path / "gen", seed=4, n_classes=1, n_instances=1, n_frames=4)
    mask_path = sorted(root.glob("*/*/masks/*.png"))[0]
    soft = np.asarray(Image.open(mask_path))
    grey = np.full_like(soft, 200)  # a grey channel that is not the mask
    Image.fromarray(np.dstack([grey, soft]), "LA").save(mask_path)
    ingest("mvimgnet", root, tmp_path / "out")
    got = {n: m for (_, n), m in _capture_masks(tmp_path / "out").items()}
    assert np.array_equal(got[mask_path.stem], soft > 127)


def _exif_frame(frame: Path, mask: Path, orientation: int, turn_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    """Store ``frame``'s pixels turned back so that EXIF ``orientation`` displays them as before; the mask made
    from those stored pixels (``turn_mask``) or left upright. Returns the displayed (RGB, mask)."""
    from PIL import ImageOps

    with Image.open(frame) as im:
        shown = np.asarray(im.convert("RGB"))
    soft = np.asarray(Image.open(mask))
    undo = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1)}[orientation]
    stored = Image.fromarray(np.ascontiguousarray(undo(shown)))
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(frame, quality=97, exif=exif)
    if turn_mask:
        Image.fromarray(np.ascontiguousarray(undo(soft))).save(mask)
    with Image.open(frame) as im:
        assert np.asarray(ImageOps.exif_transpose(im)).shape[:2] == shown.shape[:2]
    return shown, soft > 127


@pytest.mark.parametrize("orientation,turn_mask", [(6, True), (3, True), (8, False)])
def test_mvimgnet_exif_orientation_applied_to_frame_and_mask_alike(tmp_path, orientation, turn_mask):
    root = generate_mvimgnet(tmp_path / "gen", seed=5, n_classes=1, n_instances=1, n_frames=4, size=(160, 120))
    frame = sorted(root.glob("*/*/images/*.jpg"))[1]
    mask = frame.parent.parent / "masks" / f"{frame.stem}.png"
    shown, upright = _exif_frame(frame, mask, orientation, turn_mask)
    report = ingest("mvimgnet", root, tmp_path / "out")
    assert report["kept"] == 4 and balanced(report)
    row = next(r for r in read_records(tmp_path / "out", "mvimgnet").to_pylist() if r["frame_name"] == frame.stem)
    decoded = cv2.imread(row["image_uri"])  # as pairs decode it: EXIF applied
    assert (row["width"], row["height"]) == (decoded.shape[1], decoded.shape[0]) == (160, 120)
    assert np.abs(decoded[..., ::-1].astype(int) - shown).mean() < 6
    assert np.array_equal(decode_mask_png(row["mask"]), upright)


# ------------------------------------------------------------------------------------------------ capture order


def test_view_window_counts_the_capture_frame_numbers_not_positions(tmp_path):
    """A view missing from a capture (004) leaves a gap: with window 1, 003 and 005 are not neighbours."""
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.plan import plan_pairs

    root = generate_mvimgnet(tmp_path / "gen", seed=6, n_classes=1, n_instances=1, n_frames=8)
    images = next(root.glob("*/*/images"))
    (images / "004.jpg").unlink()
    (images.parent / "masks" / "004.png").unlink()
    ingest("mvimgnet", root, tmp_path / "data")
    rows = read_records(tmp_path / "data", "mvimgnet").to_pylist()
    names = {r["frame_index"]: r["frame_name"] for r in rows}
    specs = list(plan_pairs(tmp_path / "data" / "records", {"mvimgnet": 1000}, 1, PairsConfig(window=1)))
    pairs = {(names[s.src_frame], names[s.tgt_frame]) for s in specs}
    assert ("003", "005") not in pairs and ("005", "003") not in pairs
    assert ("002", "003") in pairs and ("005", "006") in pairs
    assert {r["frame_name"]: r["frame_number"] for r in rows}["005"] == 5


def test_orientation_and_aspect_helpers_match_what_opencv_decodes(tmp_path):
    from imprint.media import image_orientation, orient, probe_image, same_aspect

    stored = cv2.resize((np.random.default_rng(0).random((6, 10, 3)) * 255).astype(np.uint8), (80, 48),
                        interpolation=cv2.INTER_NEAREST)
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.png"
        im = Image.fromarray(stored)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.save(path, exif=exif)
        shown = cv2.imread(str(path))[..., ::-1]
        assert image_orientation(str(path)) == orientation
        assert np.array_equal(orient(stored, orientation), shown), orientation
        assert probe_image(str(path)) == (shown.shape[1], shown.shape[0])
    assert same_aspect((1920, 1080), (427, 240)) and same_aspect((540, 360), (1080, 720))
    assert not same_aspect((540, 360), (360, 540)) and not same_aspect((100, 100), (75, 100))

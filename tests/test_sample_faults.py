"""The fault generator: each fault is written where its truth says, and the truth labels pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imprint.ingest.sample import generate_mvimgnet, generate_ytvos
from imprint.ingest.sample.faults import FAULT_KINDS, Fault, FaultTruth, inject_faults


@pytest.fixture(scope="module")
def faulty_ytvos(tmp_path_factory):
    root = generate_ytvos(tmp_path_factory.mktemp("f"), seed=3, n_videos=8, n_frames=8)
    clean = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return root, clean, inject_faults(root, "ytvos", seed=3, clean=2)


def _labels(root, video, stem):
    return np.array(Image.open(root / "train" / "Annotations" / video / f"{stem}.png"))


def test_every_kind_lands_in_its_own_group_and_the_rest_is_untouched(faulty_ytvos):
    root, clean, truth = faulty_ytvos
    assert sorted(f.kind for f in truth.faults) == sorted(FAULT_KINDS)
    faulted = {f.group for f in truth.faults}
    assert len(faulted) == len(FAULT_KINDS)
    assert FaultTruth.load(root) == truth
    meta = json.loads((root / "train" / "meta.json").read_text())["videos"]
    untouched = [v for v in meta if v not in faulted]
    assert len(untouched) >= 2
    for rel, data in clean.items():
        if rel.parts[0] == "train" and len(rel.parts) == 4 and rel.parts[2] in untouched:
            assert (root / rel).read_bytes() == data, rel


def test_faults_change_what_they_say(faulty_ytvos):
    root, clean, truth = faulty_ytvos
    by = {f.kind: f for f in truth.faults}
    dup = by["duplicate"]
    for frame in dup.frames:
        for kind, folder in (("jpg", "JPEGImages"), ("png", "Annotations")):
            a = root / "train" / folder / dup.group / f"{dup.original}.{kind}"
            assert a.read_bytes() == (root / "train" / folder / dup.group / f"{frame}.{kind}").read_bytes()
    static = by["static"]
    for frame in static.frames:
        a = np.asarray(Image.open(root / "train" / "JPEGImages" / static.group / f"{static.original}.jpg"), float)
        b = np.asarray(Image.open(root / "train" / "JPEGImages" / static.group / f"{frame}.jpg"), float)
        assert 0 < np.abs(a - b).mean() < 3  # the same picture, with noise
    speckle = by["speckle"]
    inst = int(speckle.instances[0])
    for frame in speckle.frames:
        rel = ("train", "Annotations", speckle.group, f"{frame}.png")
        before = np.array(Image.open(io.BytesIO(clean[Path(*rel)]))) == inst
        after = _labels(root, speckle.group, frame) == inst
        assert cv2.connectedComponents(after.astype(np.uint8))[0] > cv2.connectedComponents(
            before.astype(np.uint8))[0] + 10
    switch = by["identity_switch"]
    a, b = (int(i) for i in switch.instances)
    meta = json.loads((root / "train" / "meta.json").read_text())["videos"][switch.group]["objects"]
    for frame in switch.frames:
        if frame in meta[str(a)]["frames"] and frame in meta[str(b)]["frames"]:
            rel = Path("train", "Annotations", switch.group, f"{frame}.png")
            old = np.array(Image.open(io.BytesIO(clean[rel])))
            assert np.array_equal(_labels(root, switch.group, frame) == a, old == b)


def test_pair_labels():
    truth = FaultTruth("ytvos", (
        Fault("blur", "g1", ("1",), ("00010",)),
        Fault("identity_switch", "g2", ("1", "2"), ("00010", "00015")),
        Fault("static", "g3", ("1",), ("00010", "00015"), "00005"),
    ))
    assert truth.pair_label("g1", "1", "00000", "00010") == "faulty"
    assert truth.pair_label("g1", "1", "00000", "00005") == "clean"
    assert truth.pair_fault("g2", "2", "00005", "00015") == "identity_switch"
    assert truth.pair_label("g2", "1", "00010", "00015") == "clean"  # both after the switch: one object
    assert truth.pair_fault("g3", "1", "00005", "00015") == "static"
    assert truth.pair_label("g3", "1", "00015", "00030") == "redundant"
    assert truth.pair_label("g3", "1", "00005", "00030") == "clean"
    assert FaultTruth.from_json(truth.to_json()) == truth


def test_mvimgnet_faults_and_bad_requests(tmp_path):
    root = generate_mvimgnet(tmp_path, seed=1, n_classes=2, n_instances=4, n_frames=8)
    truth = inject_faults(root, "mvimgnet", seed=1, clean=2, kinds=("blur", "identity_switch", "duplicate"))
    switch = next(f for f in truth.faults if f.kind == "identity_switch")
    assert switch.instances == ("1",) and len(switch.frames) >= 3
    with pytest.raises(ValueError, match="unknown fault"):
        inject_faults(root, "mvimgnet", kinds=("smudge",))
    with pytest.raises(ValueError, match="cannot hold"):
        inject_faults(root, "mvimgnet", per_kind=3)
    with pytest.raises(ValueError, match="layouts"):
        inject_faults(root, "vipseg")

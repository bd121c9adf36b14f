import io

import cv2
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from imprint.masks import decode_mask_png, encode_mask_png, mask_bbox, pack_mask, packed_bbox
from imprint.records import RECORDS_SCHEMA, ObjectRecord, frame_number_of, frame_sort_key, records_to_table


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (144, 256), (31, 9)])
def test_mask_png_round_trips_through_pil_and_opencv(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) > 0.6
    data = encode_mask_png(mask)
    assert np.array_equal(decode_mask_png(data), mask)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "1" and im.size == (shape[1], shape[0])
    via_cv2 = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(via_cv2 > 0, mask)


@pytest.mark.parametrize("seed", range(20))
def test_packed_bbox_equals_the_pixel_bbox(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    mask = np.zeros((h, w), bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    mask[y0:rng.integers(y0, h) + 1, x0:rng.integers(x0, w) + 1] = rng.random() > 0.1
    mask &= rng.random((h, w)) > 0.3
    assert packed_bbox(pack_mask(mask)) == mask_bbox(mask)


def test_mask_png_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        encode_mask_png(np.zeros((2, 2, 3), bool))


def test_mask_bbox_is_half_open():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    assert mask_bbox(mask) == (3, 2, 9, 5)
    assert mask_bbox(np.zeros((4, 4), bool)) is None


def test_mask_bbox_word_scan_equals_the_boolean_reductions():
    """Bool masks 8 pixels wide to a word take the word scan; every box equals the two boolean reductions'
    (and uint8 masks, strided views and widths not a multiple of 8 take those reductions themselves)."""
    def reference(mask: np.ndarray) -> tuple[int, int, int, int] | None:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        return None if rows.size == 0 else (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)

    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = int(rng.integers(1, 40)), 8 * int(rng.integers(1, 9))
        mask = rng.random((h, w)) < rng.choice([0.0, 0.002, 0.02, 0.3])
        for m in (mask, mask[:, 1:], mask[::2], mask.astype(np.uint8)):
            assert mask_bbox(m) == reference(m)
    corner = np.zeros((512, 512), bool)
    corner[511, 511] = corner[0, 0] = True
    assert mask_bbox(corner) == (0, 0, 512, 512)


def test_frames_sort_by_number_not_by_name():
    names = ["00010", "00005", "00100", "00000"]
    assert sorted(names, key=frame_sort_key) == ["00000", "00005", "00010", "00100"]
    assert sorted(["img_10", "img_9", "img_100"], key=frame_sort_key) == ["img_9", "img_10", "img_100"]
    assert [frame_number_of(n) for n in ("00005", "00000001", "3_1", "001", "img_10", "cover")] == \
        [5, 1, 1, 1, 10, None]


def test_records_table_has_the_documented_schema():
    rec = ObjectRecord("ytvos", "v", "1", 0, "00005", 5, "/a.jpg", "/a.png", 4, 3,
                       encode_mask_png(np.ones((3, 4), bool)), (0, 0, 4, 3), 1.0, "cat")
    table = records_to_table([rec])
    assert table.schema.equals(RECORDS_SCHEMA, check_metadata=True)
    assert table.column("bbox").type == pa.list_(pa.field("element", pa.int32()), 4)
    assert table.to_pylist()[0]["bbox"] == [0, 0, 4, 3]
    assert table.to_pylist()[0]["frame_number"] == 5
    assert records_to_table([]).num_rows == 0

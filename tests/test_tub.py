"""donkeycar tub v2 reading: the real tub, deleted records, bad catalogs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_tools import DataError, read_log, read_tub
from tests.builders import make_tub


def test_real_tub_leaves_out_deleted_records(donkey_tub_a):
    log = read_tub(donkey_tub_a)
    assert len(log) == 225 and log.deleted == 25  # PROVENANCE.md: 250 records, every 10th deleted
    assert float(log.steering.astype(np.float64).sum()) == pytest.approx(-12.999790499999998, abs=1e-5)
    assert not set(log.row.tolist()) & set(range(0, 250, 10))
    assert log.cameras == ("center",)
    assert Path(log.images["center"][0]).name == "1_cam_image_array_.jpg"


def test_small_tub_across_catalogs(tmp_path):
    tub = make_tub(tmp_path / "tub", records=6, deleted=(1, 4))
    log = read_log(tub)
    assert log.row.tolist() == [0, 2, 3, 5]
    np.testing.assert_allclose(log.steering, [0.0, 0.2, 0.3, 0.5])
    np.testing.assert_allclose(log.throttle, 0.3)
    assert log.deleted == 2


def test_missing_catalog(tmp_path):
    tub = make_tub(tmp_path / "tub", records=6)
    (tub / "catalog_1.catalog").unlink()
    with pytest.raises(DataError, match="catalog_1.catalog: catalog catalog_1.catalog listed in manifest.json is missing"):
        read_tub(tub)
    assert len(read_tub(tub, on_error="skip")) == 3  # catalog 0 minus deleted record 1


def test_malformed_json_line_names_catalog_and_line(tmp_path):
    tub = make_tub(tmp_path / "tub", records=3, extra_lines=['{"_index": 3, "cam/image_array": '])
    with pytest.raises(DataError, match=r"catalog_0.catalog, line 4: malformed JSON line"):
        read_tub(tub)
    log = read_tub(tub, on_error="skip")
    assert len(log) == 2 and len(log.skipped) == 1


@pytest.mark.parametrize("angle,message", [("NaN", "not a finite number"), (2.0, r"outside \[-1, 1\]"),
                                           ('"left"', "not a finite number")])
def test_bad_angle_names_the_record(tmp_path, angle, message):
    line = '{"_index": 3, "cam/image_array": "0_cam_image_array_.jpg", "user/angle": %s, "user/throttle": 0}' % angle
    tub = make_tub(tmp_path / "tub", records=3, extra_lines=[line])
    with pytest.raises(DataError, match=rf"record 3 \(line 4\): user/angle.*{message}"):
        read_tub(tub)


def test_missing_image_and_manifest(tmp_path):
    tub = make_tub(tmp_path / "tub", records=3, deleted=())
    (tub / "images" / "2_cam_image_array_.jpg").unlink()
    with pytest.raises(DataError, match=r"record 2 \(line 3\): image not found"):
        read_tub(tub)
    (tub / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json is missing"):
        read_tub(tub)


def test_non_ascii_tub_folder(tmp_path):
    tub = make_tub(tmp_path / "données" / "ログ", records=3, deleted=())
    log = read_log(tub)
    assert len(log) == 3 and "ログ" in log.images["center"][0] and "ログ" in log.source[0]


def test_every_record_bad_is_an_error_even_when_skipping(tmp_path):
    tub = make_tub(tmp_path / "tub", records=2, deleted=())
    for image in (tub / "images").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"tub: no usable records \(2 bad records skipped"):
        read_tub(tub, on_error="skip")


def test_bad_index_and_malformed_manifest(tmp_path):
    line = '{"_index": "three", "cam/image_array": "0_cam_image_array_.jpg", "user/angle": 0.1}'
    tub = make_tub(tmp_path / "tub", records=3, extra_lines=[line])
    with pytest.raises(DataError, match=r"catalog_0.catalog, line 4: _index is not an integer: 'three'"):
        read_tub(tub)
    manifest = tub / "manifest.json"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:4] + ['{"paths": ["catalog_0.catalog"'] ) + "\n")
    with pytest.raises(DataError, match=r"manifest.json, line 5: malformed JSON"):
        read_tub(tub)

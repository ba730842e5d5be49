"""DrivingLog: slicing, concat, time-ordered split."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools import DrivingLog


def make(n, recording=0, source="a.csv"):
    return DrivingLog.from_columns(center=[f"/c/{i}.jpg" for i in range(n)], left=[f"/l/{i}.jpg" for i in range(n)],
                                   steering=np.linspace(-1, 1, n), source=source, row=range(1, n + 1), recording=recording)


def test_slicing_and_masks():
    log = make(10)
    assert len(log[2:5]) == 3 and log[2:5].row.tolist() == [3, 4, 5]
    assert log[np.array([9, 0])].row.tolist() == [10, 1]
    assert len(log[log.steering > 0]) == 5
    assert len(log[-1]) == 1 and log[-1].row.tolist() == [10]


def test_concat_renumbers_recordings_and_fills_missing_cameras():
    a = make(3)
    b = DrivingLog.from_columns(center=["/t/0.jpg"], steering=[0.1], source="tub", row=[0])
    joined = a + b + a
    assert joined.recording.tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert joined.images["left"][3] == "" and joined.cameras == ("center", "left")


def test_split_is_time_ordered_per_recording():
    log = DrivingLog.concat([make(10, source="a.csv"), make(20, source="b.csv")])
    train, val = log.split(0.2)
    assert val.row.tolist() == [9, 10] + list(range(17, 21))
    assert len(train) + len(val) == 30
    assert not set(zip(train.source, train.row)) & set(zip(val.source, val.row))
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        log.split(1.5)


def test_column_lengths_are_checked():
    with pytest.raises(ValueError, match="throttle has 2 rows, steering has 3"):
        DrivingLog.from_columns(center=["a", "b", "c"], steering=[0, 0, 0], throttle=[0, 0], source="x", row=[1, 2, 3])

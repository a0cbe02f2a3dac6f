"""Pure pieces of the runner: the progress line's front/hypervolume, the fixed reference
point, per-segment sampler seeds, storage URLs (no Ray, no database server)."""

from __future__ import annotations

import pytest

from nas_attn.search.progress import front_stats, reference_point
from nas_attn.search.runner import segment_seed
from nas_attn.search.storage import redact, with_driver

DIRS = ["maximize", "minimize"]


def test_front_stats_normalised_hypervolume_and_duplicates_count_once():
    pts = [(0.5, 50.0), (0.8, 80.0), (0.4, 90.0)]  # the last one is dominated
    size, hv = front_stats(pts, DIRS, [0.0, 100.0])
    # dominated area: 0.5 x (100-50) + (0.8-0.5) x (100-80) = 25 + 6 = 31 of a 1 x 100 box
    assert size == 2 and hv == pytest.approx(0.31)
    assert front_stats([*pts, (0.8, 80.0)], DIRS, [0.0, 100.0]) == (size, pytest.approx(0.31))
    assert front_stats([], DIRS, [0.0, 100.0]) == (0, None)


def test_front_stats_point_beyond_the_reference_adds_nothing():
    assert front_stats([(0.9, 150.0)], DIRS, [0.0, 100.0])[1] == 0.0


def test_reference_point_is_fixed_by_limits_else_frozen_from_first_points():
    names = ["val_accuracy", "flops"]
    assert reference_point(names, DIRS, {"flops": 5e6}, []) == [0.0, 5e6]
    assert reference_point(names, DIRS, {}, []) is None
    assert reference_point(names, DIRS, {}, [(0.5, 10.0), (0.6, 30.0)]) == [0.0, 60.0]


def test_segment_seed_reproducible_alone_distinct_when_shared():
    assert segment_seed(7, 0, "abcdef012345", shared=False) == 7
    assert segment_seed(7, 12, "abcdef012345", shared=False) == 19
    a = segment_seed(7, 0, "abcdef012345", shared=True)
    b = segment_seed(7, 0, "0123456789ab", shared=True)
    assert a != b and 0 <= a < 2**31 - 1
    assert a == segment_seed(7, 0, "abcdef012345", shared=True)


def test_storage_urls_redacted_and_given_an_installed_driver():
    url = "postgresql://u:secret@127.0.0.1:5432/db"
    assert redact(url) == "postgresql://u:***@127.0.0.1:5432/db"
    assert "secret" not in redact(url)
    import importlib.util

    resolved = with_driver(url)
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        assert resolved == "postgresql+psycopg2://u:secret@127.0.0.1:5432/db"
    else:
        assert resolved == url
    assert with_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"

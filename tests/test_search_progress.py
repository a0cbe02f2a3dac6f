"""Pure pieces of the runner: per-segment sampler seeds, storage URLs (no Ray, no database
server). The progress line's front, hypervolume and reference point: tests/test_objectives.py."""

from __future__ import annotations

from nas_attn.search.runner import segment_seed
from nas_attn.search.storage import redact, with_driver


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

"""The tabular benchmark's file format, and the shipped table against its own space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnbench.table import KEYS, SCHEMA_VERSION, Table, load_table, params_key, save_table
from nas_attn.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "benchmarks/tabular/data"
SHIPPED_NAMES = ("attention343", "rfa256")  # each a key of generate.TABLE_SPACES


def small_table(**over) -> Table:
    rng = np.random.default_rng(1)
    kw = dict(acc=rng.uniform(0, 1, (4, 3, 5)), flops=[1.0, 2.0, 3.0, 4.0], params=[5, 6, 7, 8],
              arch_params=tuple({"a": i % 2, "b": i // 2} for i in range(4)), seeds=[0, 1, 2],
              spec_hash=("h0", "h1", "h2", "h3"), seconds=np.ones((4, 3)),
              meta={"note": "test"})
    kw.update(over)
    return Table(**kw)


def test_round_trip(tmp_path):
    t = small_table()
    path = save_table(t, tmp_path / "sub" / "t.npz")
    back = load_table(path)
    np.testing.assert_array_equal(back.acc, t.acc)
    np.testing.assert_array_equal(back.flops, t.flops)
    np.testing.assert_array_equal(back.params, t.params)
    np.testing.assert_array_equal(back.seconds, t.seconds)
    assert back.arch_params == t.arch_params and back.spec_hash == t.spec_hash
    assert back.meta == {"note": "test", "schema_version": SCHEMA_VERSION}
    assert back.lookup({"b": 1, "a": 0}) == 2  # key order does not matter
    with np.load(path, allow_pickle=False) as z:  # no pickles in the file
        assert sorted(z.files) == sorted(KEYS)


@pytest.mark.parametrize("over, field", [
    ({"acc": np.full((4, 3, 5), np.nan)}, "table.acc"),
    ({"acc": np.full((4, 3, 5), 1.5)}, "table.acc"),
    ({"flops": [1.0, 2.0, 3.0]}, "table.flops"),
    ({"flops": [1.0, 0.0, 3.0, 4.0]}, "table.flops"),
    ({"seeds": [0, 0, 1]}, "table.seeds"),
    ({"arch_params": ({"a": 0},) * 4}, "table.arch_params"),
    ({"seconds": np.ones((4, 2))}, "table.seconds"),
])
def test_schema_errors(over, field):
    with pytest.raises(ConfigError) as e:
        small_table(**over)
    assert e.value.field == field


def test_bad_files(tmp_path):
    path = save_table(small_table(), tmp_path / "t.npz")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta"]))
    np.savez(tmp_path / "v.npz", **{**data, "meta": np.asarray(json.dumps({**meta,
                                                                          "schema_version": 99}))})
    with pytest.raises(ConfigError, match="schema version"):
        load_table(tmp_path / "v.npz")
    np.savez(tmp_path / "m.npz", **{k: v for k, v in data.items() if k != "flops"})
    with pytest.raises(ConfigError, match="missing key 'flops'"):
        load_table(tmp_path / "m.npz")
    with pytest.raises(ConfigError, match="no such file"):
        load_table(tmp_path / "none.npz")
    with pytest.raises(ConfigError, match="no such architecture"):
        small_table().lookup({"a": 7, "b": 0})


@pytest.fixture(scope="module", params=SHIPPED_NAMES)
def shipped_name(request):
    return request.param


@pytest.fixture(scope="module")
def shipped(shipped_name):
    path = DATA / f"{shipped_name}.npz"
    assert path.is_file(), f"the tabular benchmark file {path} is missing (generate_table.py)"
    return load_table(path)


def test_shipped_table_schema(shipped, shipped_name):
    t = shipped
    assert 256 <= t.n_archs <= 1024 and t.n_seeds >= 3 and t.epochs >= 3
    assert (DATA / f"{shipped_name}.npz").stat().st_size < 3 * 2**20
    gen = t.meta["generation"]
    for key in ("generation_seconds", "cpu", "cpu_count", "platform"):
        assert key in gen
    assert t.meta["train"]["epochs"] == t.epochs
    assert np.isfinite(t.seconds).all() and (t.seconds > 0).all()
    assert len(t.true_front) >= 2


def test_shipped_table_covers_its_space(shipped):
    from nas_attn.arch import spec_hash
    from nas_attn.space import parse_space

    space = parse_space(t_space := shipped.meta["space"], "table space")
    assert t_space["name"] == shipped.meta["name"]
    keys = [params_key(p) for p in space.iter_params()]
    assert sorted(keys) == sorted(params_key(p) for p in shipped.arch_params)
    for i in (0, shipped.n_archs // 2, shipped.n_archs - 1):
        assert spec_hash(space.build(shipped.arch_params[i])) == shipped.spec_hash[i]


@pytest.mark.slow
def test_shipped_entries_retrain_within_seed_noise(shipped):
    """Retrain two entries with their recorded seed and settings: the final accuracy agrees
    with the table within the architecture's seed noise."""
    from nas_attn.cost import profile
    from nas_attn.data import load_dataset
    from nas_attn.space import parse_space
    from nas_attn.train import TrainConfig, train_spec

    t = shipped
    space = parse_space(t.meta["space"], "table space")
    data = load_dataset(t.meta["data"])
    for i in (int(t.true_front[0]), t.n_archs - 1):
        spec = space.build(t.arch_params[i])
        assert profile(spec, input_size=tuple(t.meta["input_size"])).flops == t.flops[i]
        col = 0
        cfg = TrainConfig(**{**t.meta["train"], "seed": int(t.seeds[col])})
        res = train_spec(spec, data, cfg)
        got = np.array([e.val_accuracy for e in res.epochs])
        tol = max(2 * float(t.final_std[i]), 3 / t.meta["data"]["val_size"])
        assert abs(got[-1] - float(t.acc[i, col, -1])) <= tol, (i, got, t.acc[i, col])


def test_table_spaces_are_named_by_their_file_and_sized_for_a_table():
    from attnbench import generate as gen

    for name, space in gen.TABLE_SPACES.items():
        n = len(gen.enumerate_archs(gen.table_space(space)))
        assert 256 <= n <= 1024 and name.endswith(str(n)), (name, n)
    assert set(SHIPPED_NAMES) == set(gen.TABLE_SPACES)


def test_shipped_table_records_its_named_space(shipped, shipped_name):
    from attnbench import generate as gen

    assert shipped.meta["space"] == gen.TABLE_SPACES[shipped_name]

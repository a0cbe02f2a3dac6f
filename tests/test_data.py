"""Datasets: readers on small files in the real formats, determinism, splits, augmentation and
strict configuration."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_attn.data import Augmentation, DataConfig, load_dataset
from nas_attn.data import cifar as cifar_mod
from nas_attn.data import digits as digits_mod
from nas_attn.data._files import download_and_extract
from nas_attn.errors import ConfigError

SMALL_CLUTTER = {"name": "cluttered-digits", "train_size": 120, "val_size": 40,
                 "test_size": 40}


# ---------------------------------------------------------------------------------------------
# config


def test_unknown_key_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "digits", "trian_size": 10})
    assert e.value.field == "data.trian_size"
    assert "train_size" in e.value.choices


@pytest.mark.parametrize(("cfg", "field"), [
    ({"name": "mnist"}, "data.name"),
    ({"name": "digits", "in_chans": 2}, "data.in_chans"),
    ({"name": "digits", "seed": -1}, "data.seed"),
    ({"name": "digits", "image_size": 2.5}, "data.image_size"),
    ({"name": "digits", "root": "/tmp"}, "data.root"),  # digits does not read files
    ({"name": "cifar10", "num_classes": 5}, "data.num_classes"),
    ({"name": "synthetic", "augment": "yes"}, "data.augment"),
    ({"name": "imagefolder", "val_fraction": 1.5, "root": "/tmp"}, "data.val_fraction"),
])
def test_bad_values_name_the_field(cfg, field):
    with pytest.raises(ConfigError) as e:
        load_dataset(cfg)
    assert e.value.field == field


def test_resolved_config_fills_the_dataset_defaults():
    r = DataConfig(name="cluttered-digits").resolved()
    assert (r.in_chans, r.image_size, r.train_size, r.distractors) == (3, 32, 6000, 4)


# ---------------------------------------------------------------------------------------------
# cluttered digits, digits, synthetic


def _fresh(cfg):
    digits_mod._cluttered.cache_clear()
    return load_dataset(cfg)


def test_cluttered_digits_is_deterministic_per_seed():
    a, b = _fresh(SMALL_CLUTTER), _fresh(SMALL_CLUTTER)
    c = _fresh({**SMALL_CLUTTER, "seed": 1})
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s)[0], getattr(b, s)[0])
        assert torch.equal(getattr(a, s)[1], getattr(b, s)[1])
    assert not torch.equal(a.train[0], c.train[0])
    assert a.train[0].shape == (120, 3, 32, 32) and a.train[0].dtype == torch.uint8
    assert a.input_size == (3, 32, 32) and a.num_classes == 10
    assert set(a.train[1].tolist()) == set(range(10))


def test_cluttered_digits_source_images_are_disjoint_between_splits():
    pools = digits_mod.source_split(0, (1078, 359, 360))
    sets = [set(p.tolist()) for p in pools]
    assert sum(map(len, sets)) == 1797 == len(set().union(*sets))
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_cluttered_digits_has_clutter_and_grey_option():
    b = _fresh(SMALL_CLUTTER)
    x = b.train[0].float() / 255
    # noise everywhere plus several objects: far more lit pixels than one 12-16 px digit
    lit = (x.amax(1) > 0.5).flatten(1).sum(1).float()
    assert lit.mean() > 60
    grey = _fresh({**SMALL_CLUTTER, "in_chans": 1, "image_size": 24, "distractors": 0})
    assert grey.train[0].shape == (120, 1, 24, 24) and grey.input_size == (1, 24, 24)


def test_plain_digits_splits_by_image_without_overlap():
    b = load_dataset({"name": "digits", "image_size": 8, "in_chans": 1})
    assert len(b.train[1]) + len(b.val[1]) + len(b.test[1]) == 1797
    key = lambda x: {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in x}  # noqa: E731
    images, _ = digits_mod._sources()
    dup = len({img.tobytes() for img in images}) < len(images)  # exact duplicates in the data
    overlap = key(b.train[0]) & key(b.test[0])
    assert len(overlap) <= (5 if dup else 0)
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "digits", "train_size": 1500})
    assert e.value.field == "data.train_size"


def test_synthetic_shapes_and_learnable_signal():
    b = load_dataset({"name": "synthetic", "in_chans": 1, "image_size": 6, "num_classes": 4,
                      "train_size": 64, "val_size": 16, "test_size": 8, "signal": 2.0})
    assert b.train[0].shape == (64, 1, 6, 6) and b.test[0].shape == (8, 1, 6, 6)
    assert b.num_classes == 4 and int(b.train[1].max()) <= 3
    # with signal, a nearest-class-mean classifier fitted on train beats chance on val
    x, y = b.train[0].flatten(1), b.train[1]
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    pred = torch.cdist(b.val[0].flatten(1), means).argmin(1)
    assert (pred == b.val[1]).float().mean() > 0.6
    assert b.augmentation.is_identity


def test_normalizer_standardises_the_training_split():
    b = _fresh(SMALL_CLUTTER)
    z = b.normalizer("cpu")(b.train[0])
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(z.std((0, 2, 3)), torch.ones(3), atol=1e-2)


# ---------------------------------------------------------------------------------------------
# augmentation


def test_flip_returns_each_image_or_its_mirror():
    x = torch.randint(0, 255, (64, 3, 5, 5), dtype=torch.uint8)
    out = Augmentation(flip=True)(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(same.sum()) < 64


def test_translation_is_a_shift_with_zero_fill_and_reproducible():
    x = torch.randint(1, 255, (32, 2, 6, 6), dtype=torch.uint8)
    aug = Augmentation(translate=2)
    out = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(3)))
    assert out.shape == x.shape and out.dtype == x.dtype
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], pad[i, :, dy:dy + 6, dx:dx + 6])]
        assert hits, f"sample {i} is not a shifted crop"
        shifts.add(hits[0])
    assert len(shifts) > 3


def test_dataset_augmentation_choices():
    assert load_dataset({"name": "digits"}).augmentation == Augmentation(translate=1)
    assert load_dataset({"name": "digits", "augment": False}).augmentation.is_identity


# ---------------------------------------------------------------------------------------------
# CIFAR in the official python-pickle format


def _write_cifar10(folder: Path, per_batch: int = 12, test: int = 10) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        if first is None:
            first = data[0]
        batch = {b"batch_label": name.encode(), b"labels": [int(i % 10) for i in range(n)],
                 b"data": data, b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(meta, f, protocol=2)
    return first


def test_cifar10_reader_on_real_format_files(tmp_path):
    first = _write_cifar10(tmp_path / "cifar-10-batches-py")
    b = load_dataset({"name": "cifar10", "root": str(tmp_path), "val_size": 15})
    assert len(b.train[1]) == 45 and len(b.val[1]) == 15 and len(b.test[1]) == 10
    assert b.train[0].shape[1:] == (3, 32, 32) and b.train[0].dtype == torch.uint8
    assert b.class_names == tuple(f"class{i}" for i in range(10))
    assert b.augmentation == Augmentation(translate=4, flip=True)
    # the first stored image (row-major R, G, B planes) is in train or val, laid out as CHW
    img = torch.from_numpy(first.reshape(3, 32, 32))
    assert any(torch.equal(img, x) for x in torch.cat([b.train[0], b.val[0]]))
    # the folder itself works as root, and the holdout is seeded
    b2 = load_dataset({"name": "cifar10", "root": str(tmp_path / "cifar-10-batches-py"),
                       "val_size": 15})
    assert torch.equal(b.val[0], b2.val[0])
    grey = load_dataset({"name": "cifar10", "root": str(tmp_path), "val_size": 5,
                         "in_chans": 1, "train_size": 20, "test_size": 4})
    assert grey.train[0].shape == (20, 1, 32, 32) and grey.test[0].shape == (4, 1, 32, 32)


def test_cifar100_reader(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("test", 8)):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"fine_labels": [i % 100 for i in range(n)],
             b"coarse_labels": [i % 20 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    b = load_dataset({"name": "cifar100", "root": str(tmp_path), "val_size": 6})
    assert b.num_classes == 100 and len(b.train[1]) == 24 and len(b.test[1]) == 8


def test_cifar_missing_and_corrupt_files_name_root_and_path(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "cifar10", "root": str(tmp_path / "nowhere")})
    assert e.value.field == "data.root" and "nowhere" in str(e.value)
    assert "data_batch_1" in str(e.value)
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "cifar10", "root": str(tmp_path), "val_size": 5})
    assert e.value.field == "data.root" and "data_batch_3" in str(e.value)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8),
                                                        b"labels": [0] * 4}))
    with pytest.raises(ConfigError, match="corrupt batch"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "val_size": 5})


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ConfigError, match="refusing"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "val_size": 5})
    assert not marker.exists()


def _tarball(src: Path, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return hashlib.md5(dest.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    _write_cifar10(staging)
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _tarball(staging, archive)
    root = tmp_path / "data"
    with pytest.raises(ConfigError) as e:
        download_and_extract(archive.as_uri(), "0" * 32, root)
    assert e.value.field == "data.download" and "md5" in str(e.value)
    with pytest.raises(ConfigError, match="download failed"):
        download_and_extract((tmp_path / "absent.tar.gz").as_uri(), md5, root)
    monkeypatch.setitem(cifar_mod.FORMATS["cifar10"], "url", archive.as_uri())
    monkeypatch.setitem(cifar_mod.FORMATS["cifar10"], "md5", md5)
    b = load_dataset({"name": "cifar10", "root": str(root), "download": True, "val_size": 5})
    assert len(b.train[1]) == 55 and (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_official_checksums_are_the_published_ones():
    assert cifar_mod.FORMATS["cifar10"]["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert cifar_mod.FORMATS["cifar100"]["md5"] == "eb9058c3a382ffc7106e4002c42a8d85"


# ---------------------------------------------------------------------------------------------
# image folders


def _png(path: Path, colour: tuple[int, int, int], size=(10, 7)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_imagefolder_with_split_folders(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for c, col in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", col)
    b = load_dataset({"name": "imagefolder", "root": str(tmp_path), "image_size": 8,
                      "val_fraction": 0.2})
    assert b.class_names == ("cat", "dog") and b.num_classes == 2
    assert len(b.train[1]) == 8 and len(b.val[1]) == 2 and len(b.test[1]) == 4
    assert b.train[0].shape[1:] == (3, 8, 8)
    # red cats, blue dogs: decoded channels follow the labels
    red = b.test[0][:, 0].float().mean((1, 2)) > b.test[0][:, 2].float().mean((1, 2))
    assert torch.equal(red, b.test[1] == 0)


def test_imagefolder_single_root_split_by_fraction(tmp_path):
    for c in ("a", "b", "c"):
        for i in range(10):
            _png(tmp_path / c / f"{i}.jpg", (i * 20, 100, 50))
    b = load_dataset({"name": "imagefolder", "root": str(tmp_path), "image_size": 6,
                      "in_chans": 1, "val_fraction": 0.2, "test_fraction": 0.1})
    assert (len(b.train[1]), len(b.val[1]), len(b.test[1])) == (21, 6, 3)
    assert b.train[0].shape[1:] == (1, 6, 6)
    assert sorted(b.val[1].tolist()) == [0, 0, 1, 1, 2, 2]


def test_imagefolder_errors_name_root_and_path(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "imagefolder", "root": str(tmp_path / "missing")})
    assert e.value.field == "data.root" and "missing" in str(e.value)
    (tmp_path / "only" / "cls").mkdir(parents=True)
    with pytest.raises(ConfigError, match="at least 2"):
        load_dataset({"name": "imagefolder", "root": str(tmp_path / "only")})
    for c in ("x", "y"):
        for i in range(3):
            _png(tmp_path / "bad" / c / f"{i}.png", (1, 2, 3))
    (tmp_path / "bad" / "y" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ConfigError) as e:
        load_dataset({"name": "imagefolder", "root": str(tmp_path / "bad")})
    assert e.value.field == "data.root" and "broken.png" in str(e.value)


def test_bundle_pickles_for_workers():
    b = load_dataset({"name": "digits", "image_size": 8})
    b2 = pickle.loads(pickle.dumps(b))
    assert torch.equal(b.train[0], b2.train[0]) and b2.augmentation == b.augmentation
    buf = io.BytesIO()
    torch.save(b.train, buf)

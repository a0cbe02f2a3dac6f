"""The CUDA path of training, proven on a real GPU: AMP (fp16 with the grad scaler, bf16),
channels_last, data resident on the GPU, a CUDA OOM as a typed failure, the same accuracy on
CPU and GPU, and a GPU-trained checkpoint exported, loaded on CPU and run by onnxruntime.

Every test is marked ``cuda`` and skipped, with the reason, where ``torch.cuda.is_available()``
is false (tests/conftest.py). ``make gpu-check`` runs them on a GPU machine.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.cuda

SPEC = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
        "stages": [None, {"attention": {"type": "eca"}, "position": "post_bn"},
                   {"attention": {"type": "se", "rd_ratio": 0.25}, "position": "post_add"}]}
DATA = {"name": "digits", "image_size": 16}
TRAIN = {"epochs": 3, "batch_size": 64, "lr": 0.05, "device": "cuda", "seed": 0}
CHANCE = 0.1


def _train(**kw):
    from nas_attn.train import train_spec

    return train_spec(SPEC, DATA, {**TRAIN, **kw})


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_trains_to_finite_losses_above_chance(amp):
    r = _train(amp=amp)
    assert all(math.isfinite(e.train_loss) and math.isfinite(e.val_loss) for e in r.epochs)
    assert r.val_accuracy > 3 * CHANCE
    assert next(r.model.parameters()).dtype == torch.float32  # master weights stay fp32
    assert next(r.model.parameters()).device.type == "cuda"


def test_fp16_uses_the_grad_scaler(monkeypatch):
    scales = []
    real = torch.amp.GradScaler.update

    def update(self, *a, **k):
        scales.append(float(self.get_scale()))
        return real(self, *a, **k)

    monkeypatch.setattr(torch.amp.GradScaler, "update", update)
    _train(amp="fp16", epochs=1)
    assert scales and scales[0] == 65536.0  # the scaler ran every step, from its initial scale


def test_channels_last_model_and_inputs():
    r = _train(channels_last=True, epochs=1, amp="bf16")
    convs = [p for p in r.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert r.val_accuracy > 2 * CHANCE


def test_data_stay_resident_on_the_gpu():
    from nas_attn.data import load_dataset
    from nas_attn.train import _place_data

    bundle = load_dataset(DATA)
    placed = _place_data(bundle, torch.device("cuda"))
    assert placed.train[0].device.type == "cuda" and placed.val[1].device.type == "cuda"
    assert bundle.train[0].device.type == "cpu"  # the caller's copy is untouched


def test_cuda_oom_becomes_a_typed_failure():
    from nas_attn.errors import OutOfMemoryError, TrialError
    from nas_attn.train import train_spec

    big = {"backbone": "resnet18_cifar", "num_classes": 10, "stages": [None] * 4}
    data = {"name": "synthetic", "image_size": 32, "train_size": 8192, "val_size": 64,
            "test_size": 64, "num_classes": 10}
    torch.cuda.set_per_process_memory_fraction(0.02)  # ~2.8 GiB of an H200
    try:
        with pytest.raises(OutOfMemoryError) as e:
            train_spec(big, data, {"epochs": 1, "batch_size": 8192, "device": "cuda"})
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert isinstance(e.value, TrialError) and e.value.reason == "oom"
    r = _train(epochs=1)  # the device is usable again afterwards
    assert math.isfinite(r.epochs[-1].train_loss)


def test_same_spec_same_accuracy_on_cpu_and_gpu():
    cpu = _train(device="cpu", deterministic=True)
    gpu = _train(device="cuda", deterministic=True)
    assert abs(cpu.val_accuracy - gpu.val_accuracy) <= 0.05, (cpu.val_accuracy,
                                                              gpu.val_accuracy)
    assert abs(cpu.epochs[0].train_loss - gpu.epochs[0].train_loss) <= 0.05


def test_gpu_checkpoint_exports_and_loads_on_cpu_and_onnxruntime_agrees(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed here")
    import numpy as np

    import nas_attn
    from nas_attn.export import export_bundle
    from nas_attn.search.evaluators import checkpoint_metadata, save_checkpoint

    r = _train(epochs=1)
    x = torch.randn(4, 3, 16, 16)
    r.model.eval()
    with torch.no_grad():
        on_gpu = r.model(x.cuda()).float().cpu()
    ckpt = save_checkpoint(r.model, tmp_path / "w.safetensors",
                           checkpoint_metadata("h", 0, 1, r.val_accuracy))
    cpu_model = nas_attn.load(ckpt, spec=SPEC)
    assert next(cpu_model.parameters()).device.type == "cpu"
    with torch.no_grad():
        on_cpu = cpu_model(x)
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3, rtol=1e-3)
    bundle = export_bundle(SPEC, cpu_model, tmp_path / "bundle", metadata={"seed": 0},
                           input_size=(3, 16, 16))
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert np.allclose(out, on_cpu.numpy(), atol=1e-4, rtol=1e-3)

"""Benchmark 5: the CNN's arithmetic against the machine's: FLOPs per step, achieved FLOP/s, fraction of peak.

FLOPs are counted per layer of the built model, a multiply-add counting as 2: a Conv2D costs
2 x H_out x W_out x k x k x C_in x C_out per patch (plus a bias add when it has one), a Dense layer
2 x inputs x outputs; batch norm, ReLU, pooling and rescaling cost a few operations per element and are
counted as such. A training step costs 3 forward passes (the forward pass, the gradient with respect to
the activations and the one with respect to the weights: the usual estimate), plus the optimizer's few
operations per weight.

The machine's peak FP32 rate is cores x clock x FP32 FLOPs per cycle per core. FLOPs per cycle come from
the CPU flags: an FMA unit does 2 FLOPs per lane; AVX-512 or AVX2 cores with two 256-bit FMA pipes (AMD
Zen 2-4: Zen 4 runs AVX-512 on those same pipes, double-pumped) do 2 x 8 x 2 = 32; Intel cores with AVX-512
and two 512-bit FMA units do 64. `PATHCNN_PEAK_FLOPS_PER_CYCLE` overrides the guess. The bf16 peak
(avx512_bf16 VDPBF16PS: two bf16 products per 32-bit lane) is twice the FP32 one. The clock is the CPU's
maximum frequency from cpufreq, else the "cpu MHz" /proc/cpuinfo reports (a VM's nominal clock).

The step is timed like input_pipeline's model-only epoch: one cached batch fed over and over, so no input
work is included; the fastest epoch after the first (which compiles) counts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

FMA_FLOPS = 2  # a fused multiply-add is 2 floating-point operations


def cpu_flags_and_vendor() -> tuple[set[str], str]:
    """The CPU's feature flags and vendor id from /proc/cpuinfo (empty on other systems)."""
    flags: set[str] = set()
    vendor = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("vendor_id") and not vendor:
                vendor = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return flags, vendor


def clock_hz() -> tuple[float, str]:
    """The CPU clock in Hz and where it came from."""
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if cpufreq.is_file():
        return int(cpufreq.read_text()) * 1e3, "cpufreq max"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) * 1e6, "/proc/cpuinfo cpu MHz"
    except OSError:
        pass
    return float("nan"), "unknown"


def fp32_flops_per_cycle(flags: set[str], vendor: str) -> tuple[int, str]:
    """FP32 FLOPs per cycle per core, and the reasoning, from the CPU flags (see the module docstring)."""
    override = os.environ.get("PATHCNN_PEAK_FLOPS_PER_CYCLE")
    if override:
        return int(override), "PATHCNN_PEAK_FLOPS_PER_CYCLE"
    if "avx512f" in flags and vendor == "GenuineIntel":
        return 2 * 16 * FMA_FLOPS, "Intel AVX-512: 2 FMA units x 16 FP32 lanes x 2"
    if "avx512f" in flags or ("avx2" in flags and "fma" in flags):
        return 2 * 8 * FMA_FLOPS, "2 FMA pipes x 8 FP32 lanes (256 bit) x 2"
    if "sse2" in flags:
        return 2 * 4 * 2, "SSE: 2 x 4 lanes x (add + multiply)"
    return 2, "unknown CPU: 2"


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one patch's forward pass, counted per layer."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        output = layer.output.shape
        elements = int(np.prod([dim for dim in output[1:] if dim is not None]))
        if isinstance(layer, keras.layers.Conv2D):
            height, width, out_channels = output[1], output[2], output[3]
            kernel_h, kernel_w = layer.kernel_size
            in_channels = layer.input.shape[-1]
            total += FMA_FLOPS * height * width * kernel_h * kernel_w * in_channels * out_channels
            total += elements if layer.use_bias else 0
        elif isinstance(layer, keras.layers.Dense):
            total += FMA_FLOPS * layer.input.shape[-1] * layer.units + layer.units
            total += 5 * layer.units if layer.activation is keras.activations.softmax else layer.units
        elif isinstance(layer, keras.layers.BatchNormalization):
            total += 2 * elements  # inference form: one multiply and one add per element
        elif isinstance(layer, keras.layers.MaxPooling2D):
            total += elements * int(np.prod(layer.pool_size))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            total += int(np.prod(layer.input.shape[1:]))
        else:  # rescaling, ReLU, dropout, flatten: about one operation per element
            total += elements
    return int(total)


def weight_count(model: keras.Model) -> int:
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def run(patches_dir: str, steps: int, epochs: int, predict_patches: int, seed: int) -> dict[str, Any]:
    """FLOPs per step, achieved FLOP/s of a model-only epoch and of predict, and their fractions of peak."""
    from pathcnn.models import make_model
    from pathcnn.params import load_params
    from pathcnn.patchsets import patch_array, read_manifest
    from pathcnn.seeding import seed_everything
    from pathcnn.training import make_dataset, predict_probabilities

    seed_everything(seed)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").train  # tune.space start values
    frame = read_manifest(Path(patches_dir))
    frame = frame[frame["kept"]].reset_index(drop=True)
    class_names = sorted(frame["label"].unique())
    patches = np.asarray(patch_array(Path(patches_dir), frame))
    labels = frame["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy(dtype=np.int64)

    model = make_model(tuple(patches.shape[1:]), len(class_names), params)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="sparse_categorical_crossentropy")
    batch = next(iter(make_dataset(patches, labels, params.batch_size, seed, True, params.augment, 0.0)))
    cached = tf.data.Dataset.from_tensors(batch).repeat(steps)
    timings: list[float] = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(cached, epochs=1, verbose=0)
        timings.append(time.perf_counter() - start)
    epoch_seconds = min(timings[1:] or timings)

    forward = forward_flops(model)
    batch_size = int(batch[0].shape[0])
    step_flops = 3 * forward * batch_size + 10 * weight_count(model)  # Adam: about 10 operations per weight
    achieved = step_flops * steps / epoch_seconds

    sample = np.resize(patches, (predict_patches, *patches.shape[1:]))
    predict_probabilities(model, sample[: min(len(sample), 256)])  # trace once, outside the timing
    start = time.perf_counter()
    predict_probabilities(model, sample)
    predict_seconds = time.perf_counter() - start

    flags, vendor = cpu_flags_and_vendor()
    per_cycle, reason = fp32_flops_per_cycle(flags, vendor)
    hz, clock_source = clock_hz()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    peak = cores * hz * per_cycle
    return {
        "batch_size": batch_size,
        "forward_mflops_per_patch": forward / 1e6,
        "train_step_gflops": step_flops / 1e9,
        "train_step_ms": 1000 * epoch_seconds / steps,
        "train_achieved_gflops_per_second": achieved / 1e9,
        "peak_fp32_gflops_per_second": peak / 1e9,
        "peak_bf16_gflops_per_second": 2 * peak / 1e9 if "avx512_bf16" in flags else float("nan"),
        "train_fraction_of_fp32_peak": achieved / peak,
        "predict_patches_per_second": predict_patches / predict_seconds,
        "predict_achieved_gflops_per_second": forward * predict_patches / predict_seconds / 1e9,
        "predict_fraction_of_fp32_peak": forward * predict_patches / predict_seconds / peak,
        "cores": cores,
        "clock_ghz": hz / 1e9,
        "clock_source": clock_source,
        "fp32_flops_per_cycle": per_cycle,
        "flops_per_cycle_reason": reason,
        "precision": "float32",
    }

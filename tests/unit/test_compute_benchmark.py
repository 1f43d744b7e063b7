"""The compute benchmark's FLOP count, checked against hand-counted layers."""

from __future__ import annotations

import keras
from benchmarks.compute import FMA_FLOPS, forward_flops, fp32_flops_per_cycle


def test_conv_and_dense_flops_are_counted_per_multiply_add() -> None:
    inputs = keras.Input(shape=(8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    flat = keras.layers.Flatten()(conv)
    outputs = keras.layers.Dense(2, activation="linear")(flat)
    model = keras.Model(inputs, outputs)
    conv_flops = FMA_FLOPS * 8 * 8 * 3 * 3 * 3 * 4  # H x W x k x k x C_in x C_out multiply-adds
    flatten_flops = 8 * 8 * 4  # one operation per element
    dense_flops = FMA_FLOPS * 256 * 2 + 2 + 2  # multiply-adds, bias, activation
    assert forward_flops(model) == conv_flops + flatten_flops + dense_flops


def test_peak_flops_per_cycle_follow_the_cpu_flags(monkeypatch) -> None:
    monkeypatch.delenv("PATHCNN_PEAK_FLOPS_PER_CYCLE", raising=False)
    assert fp32_flops_per_cycle({"avx512f", "avx2", "fma"}, "AuthenticAMD")[0] == 32
    assert fp32_flops_per_cycle({"avx512f"}, "GenuineIntel")[0] == 64
    assert fp32_flops_per_cycle({"avx2", "fma"}, "GenuineIntel")[0] == 32
    monkeypatch.setenv("PATHCNN_PEAK_FLOPS_PER_CYCLE", "16")
    assert fp32_flops_per_cycle({"avx512f"}, "AuthenticAMD") == (16, "PATHCNN_PEAK_FLOPS_PER_CYCLE")

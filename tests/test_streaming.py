"""Streaming models with a recurrent state, inputs whose batch axis is not first, a 0-d input: a
published voice-activity model (Silero VAD, as the `silero-vad` package ships it) and a GRU trained
here, through `check` on ORT, every figure computed a second way by a streaming loop written here."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import numpy as np
import pytest

from conftest import run_cli

CHUNK, CONTEXT, SEQUENCES, CHUNKS = 512, 64, 16, 10


def speech_like(rng, n: int) -> np.ndarray:
    """Harmonic bursts with a moving pitch over noise, 16 kHz: a VAD's probability moves with them."""
    t = np.arange(CHUNKS * CHUNK + CONTEXT) / 16000
    audio = np.zeros((n, len(t)), np.float32)
    for i in range(n):
        f0, rate = rng.uniform(90, 250), rng.uniform(0.5, 3)
        envelope = np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)) > rng.uniform(-0.5, 0.5)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * np.sin(4 * np.pi * t))) / k for k in range(1, 12))
        audio[i] = 0.3 * envelope * voiced + rng.normal(0, rng.uniform(0.001, 0.05), len(t))
    # each chunk as the model takes it: the previous chunk's last 64 samples, then 512 new ones
    return np.stack([audio[:, k * CHUNK: k * CHUNK + CHUNK + CONTEXT] for k in range(CHUNKS)], axis=1)


def stream_by_hand(path, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk speech probabilities and final states, one sequence at a time, as Silero's own
    OnnxWrapper runs it (state zeros([2, 1, 128]) carried forward, sr an int64 scalar)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, states = [], []
    for sequence in inputs:
        state, row = np.zeros((2, 1, 128), np.float32), []
        for chunk in sequence:
            out, state = session.run(None, {"input": chunk[None], "state": state, "sr": np.array(16000, np.int64)})
            row.append(out[0, 0])
        probs.append(row)
        states.append(state[:, 0])
    return np.array(probs), np.array(states)


@pytest.mark.slow
def test_a_published_voice_activity_model_streams_through_check_with_per_chunk_latency(tmp_path):
    model = resources.files("silero_vad") / "data" / "silero_vad_16k_op15.onnx"
    shutil.copyfile(model, tmp_path / "vad.onnx")
    inputs = speech_like(np.random.default_rng(0), SEQUENCES)
    np.savez(tmp_path / "eval.npz", input=inputs, sr=np.full(SEQUENCES, 16000, np.int64))
    (tmp_path / "edge-distill.toml").write_text(
        '[model]\nstudent = "vad.onnx"\nbatch_axes = { state = 1 }\nstate = { stateN = "state" }\n'
        '[data]\nevaluation = "eval.npz"\n[measure]\nruns = 30\nwarmup = 3\n'
        '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8-dynamic", "int8"]\n'
        "[budgets]\nlatency_p95_ms = 100\n"
        "[budgets.outputs.output]\nmax_max_abs_error = 0.05\n")
    proc = run_cli("check", tmp_path / "edge-distill.toml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fp32, dynamic, static = report["results"]

    # The float artifact streamed by the tool equals Silero's own loop; its state is a state.
    assert fp32["outputs"]["output"]["max_abs_error"] == 0 and fp32["outputs"]["stateN"]["kind"] == "state"
    assert fp32["outputs"]["output"]["shape"] == [1]  # per chunk: sequences x chunks samples
    # int8-dynamic: each model carries its own state; the error the tool reports is the one a loop
    # written here finds between the two artifacts.
    float_probs, _ = stream_by_hand(tmp_path / "out" / fp32["artifact"], inputs)
    int8_probs, _ = stream_by_hand(tmp_path / "out" / dynamic["artifact"], inputs)
    error = np.abs(int8_probs - float_probs)
    assert dynamic["outputs"]["output"]["max_abs_error"] == pytest.approx(error.max(), abs=1e-5)
    assert dynamic["outputs"]["output"]["mean_abs_error"] == pytest.approx(error.mean(), abs=1e-5)
    assert float_probs.std() > 0.05  # the data move the model: a figure on them means something
    # Latency is one chunk's, measured; the calibrated precision is refused with the reason, its row kept.
    assert fp32["latency"]["provenance"]["kind"] == "measured" and 0 < fp32["latency"]["p50_ms"] < 100
    assert static["failure"]["exit_code"] == 2 and "weight-only precisions" in static["failure"]["reason"]
    broken = {c["name"] for r in report["results"] for c in r["checks"] if c["passed"] is False}
    expected = proc.returncode == 1 if error.max() > 0.05 else proc.returncode == 2
    assert expected, proc.stdout + proc.stderr
    assert broken == ({"ort-int8-dynamic/output[output]/max_max_abs_error"} if error.max() > 0.05 else set())


def test_a_kind_declared_for_one_output_leaves_the_state_output_in_place(tmp_path):
    # [model.outputs.output] alone once hid stateN: "[model] state names no output 'stateN'; the model's outputs: output"
    shutil.copyfile(resources.files("silero_vad") / "data" / "silero_vad_16k_op15.onnx", tmp_path / "vad.onnx")
    inputs = speech_like(np.random.default_rng(0), 2)
    np.savez(tmp_path / "eval.npz", input=inputs, sr=np.full(2, 16000, np.int64))
    (tmp_path / "edge-distill.toml").write_text(
        '[model]\nstudent = "vad.onnx"\nbatch_axes = { state = 1 }\nstate = { stateN = "state" }\n'
        '[model.outputs.output]\nkind = "dense"\n[data]\nevaluation = "eval.npz"\n[measure]\nruns = 20\nwarmup = 1\n'
        '[[targets]]\nname = "ort"\nprecisions = ["fp32"]\n')
    proc = run_cli("check", tmp_path / "edge-distill.toml", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (fp32,) = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert fp32["outputs"]["stateN"]["kind"] == "state" and fp32["outputs"]["output"]["inferred"] is False
    float_probs, _ = stream_by_hand(tmp_path / "out" / fp32["artifact"], inputs)
    assert fp32["outputs"]["output"]["max_abs_error"] == 0 and float_probs.max() > 0.15  # the bursts read as speech


def test_inputs_laid_out_as_the_model_takes_them():
    from edge_distill.calibration import Dataset, InputSpec
    from edge_distill.errors import BadInput
    from edge_distill.streaming import ModelIO

    io = ModelIO((InputSpec("x", ("batch", 3)), InputSpec("h", (2, "batch", 4), batch_axis=1),
                  InputSpec("sr", (), "int64")), ("y", "hn"), {"hn": "h"})
    assert [s.shape for s in io.data_specs()] == [("batch", "chunks", 3), ("batch",)]
    seen = []

    def model(feeds):  # a model in its own layout: h [2, B, 4], sr 0-d; y = sum of x + h's mean
        seen.append((feeds["h"].shape, feeds["sr"].shape))
        h = feeds["h"] + feeds["x"].sum(axis=1)[None, :, None]
        return [h.mean(axis=(0, 2))[:, None], h]

    data = Dataset("d", {"x": np.ones((5, 3, 3), np.float32), "sr": np.full(5, 16000)})
    y, hn = io.run(io.step(model), data)
    assert seen == [((2, 1, 4), ())] * 15  # each sequence alone, chunk by chunk: the state batch second, sr 0-d
    assert y.shape == (15, 1) and hn.shape == (15, 2, 4)  # sequences x chunks, samples first
    assert y[:3, 0].tolist() == [3.0, 6.0, 9.0]  # the state carried from chunk to chunk
    with pytest.raises(BadInput, match="input 'sr' has no batch axis .* hold 2 different values"):
        io.check(Dataset("d", {"x": np.ones((2, 3, 3)), "sr": np.array([8000, 16000])}), "eval.npz")


def test_a_streaming_outputs_last_chunk_is_judged_apart():
    from edge_distill.evaluate import OutputRef, output_figures

    ref = np.zeros((12, 1), np.float32)  # 3 sequences x 4 chunks, samples first
    out = ref.copy()
    out[3::4] = 0.5  # each sequence's last chunk drifts
    spec = {"kind": "dense", "index": 0, "inferred": False, "data_range": 0.0}
    found = output_figures([OutputRef("p", spec, ref)], [out], "measured", sequences=3)["p"]
    assert found["max_abs_error"] == 0.5 and found["mean_abs_error"] == pytest.approx(0.125)
    assert found["last_chunk"]["mean_abs_error"] == 0.5  # every last chunk, and only they

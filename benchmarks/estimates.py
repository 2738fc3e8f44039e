"""How far the device profiles' estimates are from published measurements.

For each profile with published one-thread runs of its core in toolkit/device_profiles/measurements/
(ncnn's benchmark tables), the standard networks of benchmarks/networks.py are exported to ONNX
(fp32, and int8 as ORT static QDQ), estimated with the profile, and compared with the published
mean latency. ncnn's "fp32" runs use fp16 storage and arithmetic on ARMv8.2 cores (its defaults),
so they are compared with the profile's fp16 estimate.

    python benchmarks/estimates.py [--update-profiles]

prints the table, writes benchmarks/results/estimates.json and, with --update-profiles, each scored
profile's [validation] table (what `edge-distill devices` shows, and the range every estimate carries).
"""

from __future__ import annotations

import argparse
import csv
import re
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import networks  # noqa: E402

from edge_distill.devices.profiles import estimate, load_profile  # noqa: E402
from edge_distill.targets import Precision  # noqa: E402

CORPUS = ROOT / "toolkit" / "device_profiles" / "measurements" / "ncnn.csv"
# profile -> (the corpus device whose core it describes, threads)
VALIDATED_ON = {"raspberry-pi-5": ("Raspberry Pi 5", "1"),
                "android-flagship": ("MediaTek reference device (hostname k6989v1_64)", "1")}
PRECISIONS = {"fp32": Precision("fp16", 16, 16, "fp16"), "int8": Precision("int8", 8, 8, "int8")}


def graphs(folder: Path) -> dict:
    """(network, precision) -> ONNX path: the float export and its static QDQ int8."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = {}
    for name in networks.NETWORKS:
        exported, fp32, int8 = (folder / f"{name}.{kind}.onnx" for kind in ("exported", "fp32", "int8"))
        networks.export(name, exported)
        quant_pre_process(str(exported), str(fp32))
        quantize_static(str(fp32), str(int8), networks.random_reader(networks.INPUT.get(name, 224)), per_channel=True)
        out[name, "fp32"], out[name, "int8"] = fp32, int8
    return out


def rows() -> list[dict]:
    published = list(csv.DictReader(CORPUS.open()))
    result = []
    with tempfile.TemporaryDirectory() as work:
        paths = graphs(Path(work))
        for profile_name, (device, threads) in VALIDATED_ON.items():
            profile = load_profile(profile_name)
            for row in published:
                key = (row["model"], row["precision"])
                if row["device"] != device or row["threads"] != threads or key not in paths:
                    continue
                ms = estimate(paths[key], PRECISIONS[row["precision"]], profile)["latency_ms"]
                result.append({"profile": profile_name, "device": device, "model": row["model"],
                               "precision": row["precision"], "published_ms": float(row["latency_ms"]),
                               "estimated_ms": round(ms, 3), "ratio": round(ms / float(row["latency_ms"]), 3),
                               "source": row["source"]})
    return result


def summary(result: list[dict]) -> dict:
    by_profile = {}
    for name in dict.fromkeys(r["profile"] for r in result):
        ratios = [r["ratio"] for r in result if r["profile"] == name]
        errors = [max(r, 1 / r) for r in ratios]
        device, threads = VALIDATED_ON[name]
        by_profile[name] = {"against": f"ncnn, {device}, {threads} thread", "runs": len(errors),
                            "median_error": round(statistics.median(errors), 2),
                            "within_1_5x": round(sum(e <= 1.5 for e in errors) / len(errors), 2),
                            "ratio_low": min(ratios), "ratio_high": max(ratios)}
    return by_profile


def update_profile(name: str, validation: dict) -> None:
    """Replace the profile's [validation] table (always the file's last) with these figures."""
    path = ROOT / "toolkit" / "device_profiles" / f"{name}.toml"
    text = re.sub(r"\n\[validation\][^\n]*\n.*\Z", "\n", path.read_text(), flags=re.S).rstrip("\n") + "\n"
    lines = ["", "[validation]  # written by benchmarks/estimates.py: estimate / published on the corpus's runs"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in validation.items()]
    path.write_text(text + "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-profiles", action="store_true", help="write each profile's [validation]")
    args = parser.parse_args()
    result = rows()
    print("| profile | model | precision | published ms | estimated ms | estimate / published |")
    print("|---|---|---|---|---|---|")
    for r in result:
        print(f"| {r['profile']} | {r['model']} | {r['precision']} | {r['published_ms']:.2f} | "
              f"{r['estimated_ms']:.2f} | {r['ratio']:.2f} |")
    scores = summary(result)
    for name, s in scores.items():
        print(f"{name}: median error {s['median_error']}x, {s['within_1_5x']:.0%} within 1.5x, on {s['runs']} "
              "published runs")
    out = ROOT / "benchmarks" / "results" / "estimates.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": result, "profiles": scores}, indent=2, sort_keys=True) + "\n")
    if args.update_profiles:
        for name, validation in scores.items():
            update_profile(name, validation)
    return 0


if __name__ == "__main__":
    sys.exit(main())

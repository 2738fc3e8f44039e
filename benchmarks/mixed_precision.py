"""What a mixed-precision search costs on the example: wall time and trials per target.

    python benchmarks/mixed_precision.py

runs `edge-distill check` on examples/fashion-mnist/mixed-precision-{ort,tflite}.toml (plain int4
breaks a slice budget there, int4-auto mends it) and prints, per target, the search's trials, its
seconds, the layers it left in float and the share of weights still int4. The goal (#16): under 3
minutes per target on a 2-core machine, trials at most 1 + 2 x layers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    print("| target | trials | layers | bound 1+2xlayers | search s | met | left in float | int4 weights |")
    print("|---|---|---|---|---|---|---|---|")
    for target in ("ort", "tflite"):
        with tempfile.TemporaryDirectory() as out:
            config = ROOT / "examples" / "fashion-mnist" / f"mixed-precision-{target}.toml"
            subprocess.run([sys.executable, "-m", "edge_distill", "check", str(config), "--out", f"{out}/o", "-q"],
                           check=False, capture_output=True)
            report = json.loads((Path(out) / "o" / "report.json").read_text())
        auto = next(r for r in report["results"] if r["precision"].endswith("-auto"))
        m = auto["details"]["mixed_precision"]
        layers = len(m["sensitivity"])
        print(f"| {target} | {m['trials']} | {layers} | {1 + 2 * layers} | {m['seconds']:.1f} | {m['met']} | "
              f"{len(m['keep_float'])} | {m['quantized_share']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

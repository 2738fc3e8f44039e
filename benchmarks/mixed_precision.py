"""What a mixed-precision search costs on the example: wall time and trials per target.

    python benchmarks/mixed_precision.py

runs `edge-distill check` on examples/fashion-mnist/mixed-precision-{ort,tflite,coreml}.toml (plain
int4 breaks a slice budget there, int4-auto mends it) and prints, per target, the search's trials, its
seconds, the layers it raised to int8 and to float, and the share of weights still int4. The goal
(#16): under 3 minutes per target on a 2-core machine, trials at most 2 + 3 x layers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    print("| target | trials | layers | bound 2+3xlayers | search s | met | in int8 | in float | int4 weights |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target in ("ort", "tflite", "coreml"):
        with tempfile.TemporaryDirectory() as out:
            config = ROOT / "examples" / "fashion-mnist" / f"mixed-precision-{target}.toml"
            subprocess.run([sys.executable, "-m", "edge_distill", "check", str(config), "--out", f"{out}/o", "-q"],
                           check=False, capture_output=True)
            report = json.loads((Path(out) / "o" / "report.json").read_text())
        auto = next(r for r in report["results"] if r["precision"].endswith("-auto"))
        m = auto["details"]["mixed_precision"]
        layers = len(m["sensitivity"])
        int8 = sum(1 for step in m["raised"].values() if step == "int8")
        print(f"| {target} | {m['trials']} | {layers} | {2 + 3 * layers} | {m['seconds']:.1f} | {m['met']} | "
              f"{int8} | {len(m['keep_float'])} | {m['base_share']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""TEST DOUBLE: a stand-in for `adb` with one phone attached (see README.md beside it).

It answers the commands edge-distill sends, and for the benchmark binaries replays output captured
from the real tools. It never runs a model: its latency figures are those of the captured logs.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
SERIAL, MODEL = "R5CT21ABCDE", "SM-A546B"
PROPS = {"ro.product.model": MODEL, "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a"}


def main(argv: list[str]) -> int:
    scenario = os.environ.get("STAND_IN_ADB_SCENARIO", "ok")
    if os.environ.get("STAND_IN_ADB_LOG"):
        with open(os.environ["STAND_IN_ADB_LOG"], "a") as log:
            log.write(" ".join(argv) + "\n")
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv[:1] == ["devices"]:
        print("List of devices attached")
        if scenario == "unauthorized":  # debugging not yet allowed on the phone: adb cannot read its model
            print(f"{SERIAL:<22} unauthorized usb:1-1 transport_id:1")
        elif scenario != "none":
            state = "offline" if scenario == "offline" else "device"
            print(f"{SERIAL:<22} {state} usb:1-1 product:a54xnseea model:{MODEL} device:a54x transport_id:1")
        if scenario == "two":
            print(f"{'emulator-5554':<22} device product:sdk_gphone64 model:sdk_gphone64 device:emu64a transport_id:2")
        print()
        return 0
    if serial not in (None, SERIAL) or scenario == "none":
        print(f"adb: device '{serial}' not found" if serial else "adb: no devices/emulators found", file=sys.stderr)
        return 1
    if argv[:1] == ["push"]:
        if not Path(argv[1]).is_file():
            print(f"adb: error: cannot stat '{argv[1]}': No such file or directory", file=sys.stderr)
            return 1
        print(f"{argv[1]}: 1 file pushed, 0 skipped. 35.2 MB/s ({Path(argv[1]).stat().st_size} bytes in 0.001s)")
        return 0
    if argv[:1] != ["shell"]:
        print(f"stand_in_adb: unsupported command {argv}", file=sys.stderr)
        return 1
    command = argv[1:]
    if command[:1] == ["getprop"]:
        print(PROPS.get(command[1], ""))
        return 0
    if command[:1] in (["mkdir"], ["chmod"]):
        return 0
    tool = next((Path(c).name for c in command if c.endswith(("benchmark_model", "onnxruntime_perf_test"))), None)
    if tool is None:
        print(f"/system/bin/sh: {command[0]}: not found", file=sys.stderr)
        return 127
    if scenario == "vanish":
        return 255  # AOSP adb: "returns 255 on unexpected disconnection", printing nothing
    if scenario == "binary-fails":
        if tool == "benchmark_model":
            print("INFO: STARTING!\nERROR: Could not open 'model.tflite'.", file=sys.stderr)
            print("ERROR: Benchmarking failed.", file=sys.stderr)
            return 1
        print("Run failed:Load model from /data/local/tmp/edge-distill/model.onnx failed: Protobuf parsing failed.")
        return 255
    replay = f"{tool}-no-percentiles.txt" if scenario == "no-percentiles" and tool == "benchmark_model" \
        else f"{tool}.txt"
    sys.stdout.write((HERE / "replays" / replay).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""TEST DOUBLE: a stand-in for Xcode's `xcrun` (see README.md beside it). It answers
`xcrun xctrace list devices` with the real tool's layout: an online iPhone, the Mac itself (no iOS
version), a simulator. $STAND_IN_XCODE_SCENARIO: ok, none, offline."""

import os
import sys
from pathlib import Path

if sys.argv[1:4] != ["xctrace", "list", "devices"]:
    print(f"stand_in_xcrun: unsupported command {sys.argv[1:]}", file=sys.stderr)
    sys.exit(1)
text = (Path(__file__).parent / "replays" / "xctrace-list-devices.txt").read_text()
scenario = os.environ.get("STAND_IN_XCODE_SCENARIO", "ok")
phone = "Dana's iPhone (18.5) (00008130-001A2B3C4D5E601E)\n"
if scenario == "none":
    text = text.replace(phone, "")
elif scenario == "offline":
    text = text.replace(phone, "").replace("== Devices Offline ==\n", "== Devices Offline ==\n" + phone)
sys.stdout.write(text)

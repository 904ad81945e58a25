#!/usr/bin/env python3
"""Regenerate the uac_*.xml scenarios next to this file, or print a DTMF/cancel variant.

    python tests/peers/sipp/gen_uac.py all
    python tests/peers/sipp/gen_uac.py dtmf --digits 42# --wait-ms 3000 > my_dtmf.xml
    python tests/peers/sipp/gen_uac.py cancel --ring-ms 2000 > my_cancel.xml

The templates live in tests/peers/sipp_gen.py (importable; tests use
tests.peers.sipp.write_dtmf_scenario at run time).  This directory must not
get an __init__.py: it would shadow the module tests/peers/sipp.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.peers import sipp_gen  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("all", help="(re)write the uac_*.xml files next to this script")
    sub.add_parser("load")
    p = sub.add_parser("call-pcap")
    p.add_argument("--hold-ms", type=int, default=8000)
    p = sub.add_parser("dtmf")
    p.add_argument("--digits", default="123#")
    p.add_argument("--wait-ms", type=int, default=2000)
    p.add_argument("--gap-ms", type=int, default=600)
    p.add_argument("--hold-ms", type=int, default=4000)
    p = sub.add_parser("cancel")
    p.add_argument("--ring-ms", type=int, default=500)
    a = ap.parse_args()
    if a.cmd == "all":
        for name, gen in sipp_gen.ALL.items():
            (HERE / name).write_text(gen())
            print("wrote", HERE / name)
    elif a.cmd == "load":
        sys.stdout.write(sipp_gen.load())
    elif a.cmd == "call-pcap":
        sys.stdout.write(sipp_gen.call_pcap(a.hold_ms))
    elif a.cmd == "dtmf":
        sys.stdout.write(sipp_gen.dtmf_pcap(a.digits, a.wait_ms, a.gap_ms, a.hold_ms))
    else:
        sys.stdout.write(sipp_gen.cancel(a.ring_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())

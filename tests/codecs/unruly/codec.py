"""Fixture: a codec that is rude to the process it runs in (issue #18, items 9 and 10).

build() prints forged progress events on stdout (an image with a rate that is not a number, a resume
notice, a failed rate point) and 200 kB more (beyond a pipe's buffer), then starts two processes that
sleep 60 s: one in a new session (out of the worker's process group), one that also keeps the worker's
stdout and stderr open. Their pids go to the file named by $UNRULY_PIDFILE. Otherwise the tiny codec.
"""

import json
import os
import subprocess
import sys
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tiny_for_unruly", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def build(rate, device):
    print(json.dumps({"event": "image", "rate": "x"}), flush=True)
    print(json.dumps({"event": "resume", "message": "rate 1 bpp failed (forged)", "kept": []}), flush=True)
    print(json.dumps({"event": "rate_done", "rate": rate.target_bpp, "status": "failed"}), flush=True)
    os.write(1, b'{"event": "start", "images": "all"}\n')
    print("y" * 200_000, flush=True)
    daemon = subprocess.Popen(SLEEP, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder = subprocess.Popen(SLEEP, start_new_session=True)   # inherits the worker's stdout and stderr
    pidfile = os.environ.get("UNRULY_PIDFILE")
    if pidfile:
        Path(pidfile).write_text(f"{daemon.pid} {holder.pid}\n")
    return tiny.build(rate, device)

"""Runs a profile: one worker process per rate point, the report written after each.

The runner never measures: it starts `python -m profiler.worker` for each rate point with a time
limit, collects its `RateResult` (or records why it failed, with the last lines of its stderr), and
writes the report atomically after every rate point so a killed profile loses nothing that finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from .conditions import TestConditions
from .environment import fingerprint, merge_worker
from .report import RateResult, Report
from .submission import Submission, files_hash

Progress = Callable[[str, dict], None]


def _no_progress(kind: str, info: dict) -> None:
    pass


def run_rate(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str],
             progress: Progress = _no_progress, seed: int = 0) -> RateResult:
    """One rate point in a fresh worker process."""
    rate = next(r for r in sub.rates if r.index == rate_index)
    with tempfile.TemporaryDirectory(prefix="jpegai-worker-") as tmp:
        job_path = Path(tmp) / "job.json"
        out_path = Path(tmp) / "result.json"
        job_path.write_text(json.dumps({"submission": str(sub.directory), "rate_index": rate_index,
                                        "conditions": cond.to_dict(), "devices": devices, "seed": seed}))
        env = dict(os.environ)
        # The worker sets torch's intra-op threads itself; keep OpenMP/MKL from starting more.
        env.setdefault("OMP_NUM_THREADS", str(cond.timing.threads))
        env.setdefault("MKL_NUM_THREADS", str(cond.timing.threads))
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                        env.get("PYTHONPATH", "")] if p)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "profiler.worker", str(job_path), str(out_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=tmp)
        stderr_tail: deque[str] = deque(maxlen=40)

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the submission printed something: not ours
                if isinstance(event, dict) and "event" in event:
                    progress(event.pop("event"), {"rate": rate.target_bpp, **event})

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_tail.append(line.rstrip("\n"))

        threads = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
        for t in threads:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=cond.worker.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=5)
        wall = time.perf_counter() - t0

        if out_path.is_file() and not timed_out and proc.returncode == 0:
            result = RateResult.from_dict(json.loads(out_path.read_text()))
            if result.error is not None:
                result.error["stderr_tail"] = "\n".join(stderr_tail)
            return result
        if timed_out:
            reason = f"timed out after {cond.worker.timeout_s:g} s"
        elif proc.returncode and proc.returncode < 0:
            reason = f"worker killed by signal {-proc.returncode}"
        else:
            reason = f"worker exited with status {proc.returncode}"
        return RateResult(index=rate.index, target_bpp=rate.target_bpp, status="failed",
                          error={"stage": "worker", "message": reason, "traceback": "",
                                 "stderr_tail": "\n".join(stderr_tail), "kind": "worker"},
                          worker={"wall_s": wall})


def new_report(sub: Submission, cond: TestConditions, options: dict) -> Report:
    submission = {**sub.to_dict(), "files_sha256": files_hash(sub.directory)}
    return Report(submission=submission, conditions=cond.to_dict(), options=options,
                  environment=fingerprint(submission["files_sha256"], cond.timing.threads))


def profile(sub: Submission, cond: TestConditions, out_dir: Path, rate_indices: list[int], devices: list[str],
            progress: Progress = _no_progress, options: dict | None = None) -> Report:
    """Profile the given rate points; the report is rewritten at `out_dir/report.json` after each."""
    report = new_report(sub, cond, {**(options or {}), "devices": devices})
    path = out_dir / "report.json"
    for idx in rate_indices:
        rate = next(r for r in sub.rates if r.index == idx)
        progress("rate", {"rate": rate.target_bpp})
        result = run_rate(sub, idx, cond, devices, progress)
        report.rates.append(result)
        merge_worker(report.environment, result.environment)
        report.rates.sort(key=lambda r: r.target_bpp)
        report.compute_summary()
        report.write(path)
        progress("rate_done", {"rate": rate.target_bpp, "status": result.status})
    return report



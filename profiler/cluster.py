"""Rate points on a Dask cluster: `batch --jobs N` (a `LocalCluster` on this machine) and `--scheduler
ADDRESS` (an existing cluster: `dask scheduler` / `dask worker`, or dask-jobqueue on Slurm).

Dask (`distributed`, the `dask` extra) is the engine; nothing here schedules by itself. Each rate point is
one Dask task that calls `runner.run_rate` in a Dask worker process: the rate point's own worker process
runs there, under the limits of `[worker]` (the same `run_limited`, on every host), and its timed phases
in the timing slots of a `DaskSlotPool`, the host's slots (profiler/slots.py) shared by every Dask worker
process on that host through a `distributed.Semaphore(max_leases=timing.slots_per_host,
name="jpegai-timing-<host>")` (Dask's resources are per worker, not per host) and one `distributed.Lock`
per slot, which says which slot, so which cores, a lease is. A holder that dies loses its lease after
`distributed.scheduler.locks.lease-timeout` (30 s by default): until then no other timed phase starts
there.

A Dask worker lost during a rate point (killed, out of memory, its machine gone) makes the scheduler run
the task again elsewhere, once (`distributed.scheduler.allowed-failures` = 1 on a LocalCluster; on an
existing cluster its scheduler's own setting), and any error of the task itself is retried once
(`retries=1`); after that the rate point is recorded failed with the reason. A rate point that ran
again says so (`worker.restarts`); its figures are all from the run that finished.

The scheduler and every worker must import this suite (installed with the extra, or on their
PYTHONPATH): the scheduler unpickles the tasks. Files reach remote workers by a **shared path**: the submission (and a folder of test pictures) must be
at the same path on every worker. Before any run, every worker connected hashes them (sha256 per file,
`submission.files_fingerprint`) and must find the client's digests, and must run the same suite (the
files of this package); each task checks the submission again before its run, for a worker that joined
later. The client writes the report after every rate point, as the serial runner does, so `--resume`
works the same on a cluster. Where every worker is on the client's host (a LocalCluster), rate points
running at once with the same networks share their resolution counts and cross-check through a folder as
`runner.profile`'s do; across machines each counts its own (the same counts, more time).
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from .conditions import TestConditions
from .counting.reuse import earlier_entries
from .errors import InputError
from .model.io import write_report
from .model.report import ErrorRecord, RateResult, Report, RunInfo, WorkerInfo
from .runner import Progress, _no_progress, _with_rates, new_report, resume_plan, run_rate
from .slots import LocalSlotPool, Slot
from .submission import Submission, files_fingerprint

SEMAPHORE_PREFIX = "jpegai-timing-"
RETRIES = 1                 # a lost worker or an error of the task: run once more, then recorded failed
CONNECT_TIMEOUT_S = 30
POLL_S = 0.1
PACKAGE = Path(__file__).resolve().parent


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("command line", "--jobs/--scheduler",
                         "needs Dask: pip install 'jpegai-profile[dask]'") from None
    return distributed


# -- the host's timing slots, shared by its Dask workers -------------------------------------------------

class DaskSlotPool(LocalSlotPool):
    """This host's timing slots (the layout of `LocalSlotPool`: `slots_per_host` slots of `threads`
    physical cores, the highest-numbered; the rest untimed), held across every Dask worker process of the
    host: a `distributed.Semaphore` of `slots_per_host` leases named after the host says how many timed
    phases run, one `distributed.Lock` per slot which one. Made inside a Dask task (it binds to that
    worker's scheduler connection); `close` stops its lease refreshes."""

    def __init__(self, slots_per_host: int = 1, threads: int = 1, cpus: tuple[int, ...] | None = None,
                 host: str | None = None):
        distributed = _distributed()
        # No lending of idle slots' cores: the other Dask workers of the host, whose timed phases take
        # these slots, are not seen from this pool (its free list is not the host's).
        super().__init__(slots_per_host, threads, cpus, lend_idle=False)
        self.host = host or socket.gethostname()
        self.slots = tuple(Slot(self.host, s.index, s.cores) for s in self.slots)
        self.neighbours = None      # what other Dask workers of the host run is not seen from here
        name = f"{SEMAPHORE_PREFIX}{self.host}"
        self._semaphore = distributed.Semaphore(max_leases=len(self.slots), name=name)
        self._locks = [distributed.Lock(f"{name}-slot{s.index}") for s in self.slots]
        for prim in (self._semaphore, *self._locks):
            prim.scheduler    # noqa: B018  bound now, in the task: acquire runs in another thread

    def acquire(self) -> Slot:
        self._semaphore.acquire()
        while True:     # at most len(slots) hold the semaphore, so one lock is free or about to be
            for slot, lock in zip(self.slots, self._locks):
                if lock.acquire(blocking=False):
                    return slot
            time.sleep(0.01)

    def release(self, slot: Slot) -> None:
        self._locks[slot.index].release()
        self._semaphore.release()

    def close(self) -> None:
        for prim in (self._semaphore, *self._locks):
            pc = getattr(prim, "refresh_callback", None)
            if pc is not None:
                pc.stop()


# -- connecting ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def connect(scheduler: str | None = None, jobs: int = 1) -> Iterator[object]:
    """A `distributed.Client`: to the cluster at `scheduler`, or to a `LocalCluster` of `jobs` worker
    processes (one thread each) on 127.0.0.1, closed on leaving. The local cluster's scheduler runs a
    task again once when its worker is lost (`allowed-failures` 1); its workers get no thread-count
    variables of their own (Dask's nanny sets OMP_NUM_THREADS=1 by default: the serial run's environment
    is kept instead) and no Dask memory limit (the suite's `[worker]` limits hold)."""
    distributed = _distributed()
    import dask

    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError("command line", "--scheduler", f"no Dask scheduler answers at {scheduler} ({exc})") from None
        with client:
            yield client
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": RETRIES,
                          "distributed.nanny.pre-spawn-environ": {}}):
        cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=":0", memory_limit=0)
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


# -- on the workers --------------------------------------------------------------------------------------

def _digest(directory: str) -> str | None:
    try:
        return files_fingerprint(Path(directory))[0] if Path(directory).is_dir() else None
    except OSError:
        return None


def shared_files_problem(expected: dict[str, str]) -> str | None:
    """On a worker: None when every folder of `expected` (path → sha256 of its files) is at that path
    here with those files, else one sentence naming this host and the first folder that differs."""
    host = socket.gethostname()
    for path, sha in expected.items():
        got = _digest(path)
        if got is None:
            return f"{path} is not there on the Dask worker's host {host} (files reach workers by a shared path)"
        if got != sha:
            return (f"{path} on the Dask worker's host {host} does not hold the client's files "
                    f"(sha256 {got[:12]}… ≠ {sha[:12]}…)")
    return None


def _expected(sub: Submission, cond: TestConditions) -> dict[str, str]:
    """The folders a worker needs, with the client's digests: the suite, the submission, the pictures."""
    out = {str(PACKAGE): files_fingerprint(PACKAGE)[0], str(sub.directory): files_fingerprint(sub.directory)[0]}
    if cond.images.source != "builtin":
        out[cond.images.source] = files_fingerprint(Path(cond.images.source))[0]
    return out


def _rate_task(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str], seed: int,
               job_extra: dict | None, expected: dict[str, str], topic: str, share_host: str | None = None) -> str:
    """One rate point, in a Dask worker: the shared files checked, then `run_rate` with this host's timing
    slots; its progress events go to the client as Dask events on `topic`. The RateResult as JSON.
    `job_extra["share_dir"]` (counts shared by rate points running at once, worker._sharing) is a folder of
    `share_host`: kept only on that host."""
    from distributed import get_worker

    worker = get_worker()
    if job_extra and job_extra.get("share_dir") and socket.gethostname() != share_host:
        job_extra = {k: v for k, v in job_extra.items() if k != "share_dir"}
    rate = next(r for r in sub.rates if r.index == rate_index)

    def progress(kind: str, info: dict) -> None:
        try:
            worker.log_event(topic, {"kind": kind, "info": json.loads(json.dumps(info, default=str)),
                                     "index": rate_index})
        except Exception:   # progress is never worth a rate point
            pass

    progress("task", {"rate": rate.target_bpp, "worker": worker.address, "host": socket.gethostname()})
    problem = shared_files_problem(expected)
    if problem:
        return RateResult(index=rate_index, target_bpp=rate.target_bpp, status="failed",
                          error=ErrorRecord(kind="input", stage="worker start", message=problem)).model_dump_json()
    pool = DaskSlotPool(cond.timing.slots_per_host, cond.timing.threads)
    try:
        return run_rate(sub, rate_index, cond, devices, progress, seed=seed, job_extra=job_extra,
                        slots=pool).model_dump_json()
    finally:
        pool.close()


def check_workers(client, expected: dict[str, str]) -> None:
    """Every connected worker has the shared files (`shared_files_problem`); else bad input, one line."""
    if not client.scheduler_info()["workers"]:
        raise InputError("command line", "--scheduler", "no Dask worker is connected to the scheduler")
    for address, problem in sorted(client.run(shared_files_problem, expected).items()):
        if problem:
            raise InputError(f"Dask worker {address}", None, problem)


# -- the client ------------------------------------------------------------------------------------------

def _lost(index: int, target: float, exc: BaseException, starts: list[dict]) -> RateResult:
    where = ", ".join(f"{s['worker']} ({s['host']})" for s in starts) or "no worker"
    name = type(exc).__name__
    if name == "KilledWorker":
        message = (f"the Dask worker running this rate point was lost {len(starts) or 'several'} time(s) "
                   f"(run again once; on {where}): {exc}")
        kind = "crash"
    else:
        message = f"the Dask task failed {RETRIES + 1} times (retried once; on {where}): {name}: {exc}"
        kind = "suite"
    return RateResult(index=index, target_bpp=target, status="failed",
                      error=ErrorRecord(kind=kind, stage="dask task", message=message[:2000]),
                      worker=WorkerInfo(restarts=[f"started on {s['worker']} ({s['host']})" for s in starts]))


def profile_on(client, sub: Submission, cond: TestConditions, out_dir: Path, rate_indices: list[int],
               devices: list[str], progress: Progress = _no_progress, options: dict | None = None,
               resume: bool = False, seed: int = 0, job_extra: dict[int, dict] | None = None,
               verification: dict | None = None, jobs: int | None = None, slots=None) -> Report:
    """`runner.profile` on the Dask cluster of `client`: every rate point not already done (`resume`) is
    a task, run on whichever worker is free; the report is rewritten after each as it comes back.
    `jobs` and `slots` are the cluster's (its workers, each host's DaskSlotPool) and ignored here."""
    _distributed()
    report = new_report(sub, cond, {**(options or {}), "devices": devices,
                                    "jobs": max(1, len(client.scheduler_info()["workers"]))})
    if verification is not None:
        from .model.report import Verification

        report = report.model_copy(update={"verification": Verification.model_validate(verification)})
    path = out_dir / "report.json"
    done: dict[int, RateResult] = {}
    if resume:
        done, notice, report = resume_plan(path, report, rate_indices)
        progress("resume", {"message": notice, "kept": sorted(done)})
    check_workers(client, expected := _expected(sub, cond))   # before any run: the shared files
    planned = [r.target_bpp for r in sub.rates if r.index in rate_indices]
    report = report.model_copy(update={"run": RunInfo(
        state="running", seed=seed, planned_rates=planned, resumed_rates=sorted(r.target_bpp for r in done.values()),
        limits={"timeout_s": cond.worker.timeout_s, "memory_limit_mib": cond.worker.memory_limit_mib})})
    rates = list(done.values())
    report = _with_rates(report, rates)
    write_report(report, path)
    targets = {r.index: r.target_bpp for r in sub.rates}
    for idx in rate_indices:
        if idx in done:
            progress("rate_done", {"rate": targets[idx], "status": "ok", "resumed": True})
    todo = [i for i in rate_indices if i not in done]
    topic = f"jpegai-progress-{uuid.uuid4().hex}"
    events: queue.Queue = queue.Queue()
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    earlier = earlier_entries(rates)       # the finished (resumed) rate points' counts, for every task
    # Where every worker is on this host (a LocalCluster), rate points running at once with the same
    # networks share their resolution counts and cross-check through a folder, as `runner.profile`'s do
    # (a file lock per network pair: not across machines).
    here = socket.gethostname()
    share = (tempfile.TemporaryDirectory(prefix="jpegai-share-")
             if set(client.run(socket.gethostname).values()) == {here} else None)
    starts: dict[int, list[dict]] = {i: [] for i in todo}
    futures = {}
    try:
        for idx in todo:
            extra = {**((job_extra or {}).get(idx) or {}), "earlier": earlier,
                     **({"share_dir": share.name} if share is not None else {})}
            futures[client.submit(_rate_task, sub, idx, cond, devices, seed, extra, expected, topic, here,
                                  pure=False, retries=RETRIES,
                                  key=f"jpegai-rate-{targets[idx]:g}-{uuid.uuid4().hex[:8]}")] = idx
        pending = dict(futures)

        def drain() -> None:
            while True:
                try:
                    msg = events.get_nowait()
                except queue.Empty:
                    return
                idx, kind, info = msg.get("index"), msg.get("kind"), msg.get("info") or {}
                if idx not in starts:
                    continue
                if kind == "task":
                    starts[idx].append({"worker": str(info.get("worker")), "host": str(info.get("host"))})
                    if len(starts[idx]) == 1:
                        progress("rate", {"rate": targets[idx]})
                elif kind not in ("rate", "rate_done", "resume"):
                    progress(kind, {**info, "rate": targets[idx]})

        while pending:
            drain()
            finished = [f for f in pending if f.done()]
            if not finished:
                time.sleep(POLL_S)
                continue
            for fut in finished:
                idx = pending.pop(fut)
                drain()
                try:
                    result = RateResult.model_validate_json(fut.result())
                except Exception as exc:     # lost twice, or the task failed twice: recorded, not raised
                    result = _lost(idx, targets[idx], exc, starts[idx])
                else:
                    if len(starts[idx]) > 1:
                        lost = [f"the Dask worker {s['worker']} ({s['host']}) was lost during this rate point; "
                                "run again from the start" for s in starts[idx][:-1]]
                        result = result.model_copy(update={"worker": result.worker.model_copy(
                            update={"restarts": [*lost, *result.worker.restarts]})})
                rates.append(result)
                report = _with_rates(report, rates)
                write_report(report, path)
                progress("rate_done", {"rate": targets[idx], "status": result.status})
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
        if share is not None:
            share.cleanup()
    report = _with_rates(report, rates, state="complete")
    write_report(report, path)
    return report

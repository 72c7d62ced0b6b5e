"""A codec that exists as programs: `entry = "profiler.adapters.command:build"`.

The rate's options name the two commands as argv lists (no shell):
```toml
[[rates]]
target_bpp = 0.25
options = { encode = ["{python}", "enc.py", "{input}", "{bitstream}", "--bpp", "{target_bpp}"],
            decode = ["{python}", "dec.py", "{bitstream}", "{output}"], timeout_s = 600 }
```
Placeholders: `{input}` (the original as an 8-bit RGB PNG the suite writes), `{bitstream}` (the file the
encoder writes and the decoder reads), `{output}` (the PNG the decoder writes: 8-bit RGB, the original's
size), `{target_bpp}`, `{target_bpp_x100}` (as the JPEG AI reference software's `--set_target_bpp`),
`{width}`, `{height}`, and `{python}` (the suite's own interpreter). Commands run in the submission
directory, with the suite's root on PYTHONPATH, stdout discarded and the last lines of stderr kept.

What is measured of a program, and where it goes:
- **whole-process time and peak memory** of each call (`runs`): wall time from the start of the process
  to its exit (`os.wait4`), and the process tree's peak memory from the kernel, never polled
  (profiler/adapters/process_memory.py: cgroup v2 `memory.peak` where a child cgroup can be made, else
  `ru_maxrss` of the waited child, which covers the children it waited for), and the GPU memory of its
  processes from NVML's accounting where a device exists (else not measured, with the reason). They
  include interpreter start, imports and weight loading, and the worker reports them in their own fields
  (`images[].process`), never in the in-process columns.
- **MACs**: when the command's program is a Python interpreter (`{python}`, or `python…` found on PATH)
  that can import torch and the suite's counter, a `sitecustomize.py` on PYTHONPATH (a temporary folder)
  starts the dispatch-level counter before the codec's code runs and writes the count per module as JSON
  to the file named by `JPEGAI_COUNT_OUT` when the process exits (`count_encode`/`count_decode`). The
  whole process is counted: loading the weights adds no MACs, reading the PNG adds element operations.
  Any other program: not counted, with the reason (`macs_not_counted`).
- **parameters and precision**: from the weights file the manifest declares for the rate (counted as
  held by both the encoder and the decoder); without one they are not measured (`params_not_measured`),
  never 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

PLACEHOLDERS = ("input", "bitstream", "output", "target_bpp", "target_bpp_x100", "width", "height", "python")
DEFAULT_TIMEOUT_S = 600.0
STDERR_TAIL_LINES = 20
SUITE_ROOT = Path(__file__).resolve().parent.parent.parent
COUNT_ENV = "JPEGAI_COUNT_OUT"
COUNT_ROOT_ENV = "JPEGAI_COUNT_ROOT"

# Started by the child interpreter before its main script: counts every op until the process exits.
SITECUSTOMIZE = f'''
import os
_out = os.environ.pop("{COUNT_ENV}", None)
if _out:
    import atexit, importlib.util, json
    if importlib.util.find_spec("torchvision") is not None:
        import torchvision  # noqa: F401  (its import runs ops: before the counter, as the suite's own import)
    from profiler.counting.engine import OpCounter
    _counter = OpCounter(None, os.environ.pop("{COUNT_ROOT_ENV}", "call"))
    _counter.__enter__()

    def _jpegai_count_done():
        _counter.__exit__(None, None, None)
        tmp = _out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(_counter.result().to_dict(), fh)
        os.replace(tmp, _out)

    atexit.register(_jpegai_count_done)
'''

_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)?)?$")


class CommandError(RuntimeError):
    """A command failed: which, how, and the end of its stderr."""


def _format(argv: list, values: dict, where: str) -> list[str]:
    out = []
    for a in argv:
        if not isinstance(a, str):
            raise ValueError(f"options.{where}: every argument must be a string, got {a!r}")
        try:
            out.append(a.format(**values))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"options.{where}: unknown placeholder {exc} in {a!r} "
                             f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})") from None
    return out


def is_python(program: str) -> bool:
    return program == "{python}" or bool(_PYTHON_RE.match(Path(program).name))


def run_process(argv: list[str], cwd: Path, env: dict, timeout_s: float, measure: bool = True) -> dict:
    """Run one command as a whole process (its own group; killed with it on timeout).

    Returns {"wall_s", "maxrss_mib", "peak_source", "gpu_peak_mib", "gpu_note", "returncode",
    "stderr_tail", "timed_out"}; never raises for what the program does. `maxrss_mib` is the process
    tree's peak from the kernel (profiler/adapters/process_memory.py: cgroup v2 `memory.peak` where a
    child cgroup can be made, else `wait4`'s ru_maxrss) and `gpu_peak_mib` its processes' GPU peak from
    NVML's accounting (None where not measured, `gpu_note` says why). With `measure=False` (the suite's
    own probes) only wait4 is used.
    """
    from . import process_memory as pm

    group = pm.open_cgroup() if measure else None
    gpu = pm.gpu_begin() if measure else {"reason": "not measured (a probe of the suite)"}
    figures = None
    try:
        with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory(prefix="jpegai-wait4-") as w4:
            w4_out = Path(w4) / "wait4.json"
            # In a cgroup, memory.peak is the tree's; else the launcher's wait4 (never the worker's own RSS,
            # which a child forked straight from it would carry: process_memory's docstring).
            launch = group.wrap(argv) if group is not None else pm.wait4_wrap(argv, w4_out)
            t0 = time.perf_counter()
            proc = subprocess.Popen(launch, cwd=cwd, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

            timer = threading.Timer(timeout_s, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here: Popen must not wait again
            try:   # anything it left running in its group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            err.seek(0)
            tail = deque(err.read().decode(errors="replace").splitlines(), maxlen=STDERR_TAIL_LINES)
            figures = pm.read_wait4(w4_out) if group is None else None
        peak = group.peak_mib() if group is not None else None
    finally:
        if group is not None:
            group.close()
        gpu_peak, gpu_note = pm.gpu_end(gpu)
    if peak is not None:
        source, rss = "cgroup v2 memory.peak", peak
    elif figures is not None:
        source, rss, wall = "wait4 ru_maxrss", figures["maxrss_mib"], figures["wall_s"]
    else:   # killed before the launcher wrote its figures (the launcher's own carry the worker's RSS)
        source, rss = "not measured: the command did not finish", None
    return {"wall_s": wall, "maxrss_mib": rss,
            "peak_source": source, "gpu_peak_mib": gpu_peak, "gpu_note": gpu_note, "returncode": proc.returncode,
            "stderr_tail": "\n".join(tail), "timed_out": timed_out.is_set()}


def write_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from ..quality import to_uint8

    arr = to_uint8(image)[0].permute(1, 2, 0).cpu().numpy()
    Image.fromarray(np.ascontiguousarray(arr), "RGB").save(path)


def read_png(path: Path, width: int, height: int) -> torch.Tensor:
    """An 8-bit RGB PNG of the given size as float32 [1, 3, H, W] in [0, 1]; ValueError otherwise."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format != "PNG":
            raise ValueError(f"{path.name}: not a PNG ({im.format})")
        if im.mode != "RGB":
            raise ValueError(f"{path.name}: expected 8-bit RGB, got mode {im.mode}")
        if im.size != (width, height):
            raise ValueError(f"{path.name}: {im.size[0]}×{im.size[1]}, expected {width}×{height}")
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


class _Weights(torch.nn.Module):
    """The tensors of a declared weights file as parameters (so they are counted and their precision checked)."""

    def __init__(self, state_dict: dict):
        super().__init__()
        for i, (name, t) in enumerate(sorted(state_dict.items())):
            if isinstance(t, torch.Tensor):
                key = re.sub(r"\W", "_", name) or f"t{i}"
                self.register_parameter(key, torch.nn.Parameter(t.detach().clone(), requires_grad=False))


class CommandCodec:
    """encode()/decode() run the submission's programs (see the module docstring)."""

    runs_as_program = True

    def __init__(self, rate, device: torch.device):
        opts = rate.options
        for key in ("encode", "decode"):
            if not isinstance(opts.get(key), list) or not opts[key]:
                raise ValueError(f"options.{key}: expected the command as a non-empty list of arguments")
        self.commands = {"encode": list(opts["encode"]), "decode": list(opts["decode"])}
        self.timeout_s = float(opts.get("timeout_s", DEFAULT_TIMEOUT_S))
        self.target_bpp = rate.target_bpp
        self.cwd = Path(rate.directory) if rate.directory is not None else Path.cwd()
        self.device = device
        self._tmp = tempfile.TemporaryDirectory(prefix="jpegai-command-")
        self.tmp = Path(self._tmp.name)
        (self.tmp / "site").mkdir()
        (self.tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self._size: dict[bytes, tuple[int, int]] = {}
        self.runs: list[dict] = []          # every call's whole-process figures, in order
        if rate.state_dict:
            weights = _Weights(rate.state_dict)
            self.encoder, self.decoder = weights, weights
            self.params_not_measured = None
        else:
            self.encoder, self.decoder = torch.nn.Module(), torch.nn.Module()
            self.params_not_measured = ("a program codec's parameters come from the weights file the manifest "
                                        "declares ([[rates]] weights); none is declared")
        self.weights_source = (f"declared: {rate.weights.name}" if rate.weights is not None
                               else "inside the programs (not declared)")
        self.macs_not_counted = self._counter_problem()

    # -- environment ---------------------------------------------------------------------------------
    def _program(self, part: str) -> str:
        prog = self.commands[part][0]
        return sys.executable if prog == "{python}" else prog

    def _env(self, count_out: Path | None = None, part: str = "") -> dict:
        env = dict(os.environ)
        paths = [str(SUITE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        if count_out is not None:
            paths.insert(0, str(self.tmp / "site"))
            env[COUNT_ENV] = str(count_out)
            env[COUNT_ROOT_ENV] = part
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def _counter_problem(self) -> dict[str, str | None]:
        """Per part: why its MACs cannot be counted, or None when the injected counter can run."""
        out: dict[str, str | None] = {}
        checked: dict[str, str | None] = {}
        for part in ("encode", "decode"):
            prog = self.commands[part][0]
            if not is_python(prog):
                out[part] = (f"{Path(prog).name} is not a Python interpreter: the suite's counter cannot run "
                             "inside it; MACs not counted")
                continue
            exe = self._program(part)
            if exe not in checked:
                found = exe if os.path.isabs(exe) else shutil.which(exe, path=os.environ.get("PATH"))
                if found is None:
                    checked[exe] = f"{exe} not found on PATH"
                else:
                    r = run_process([found, "-c", "import torch, profiler.counting.engine"], self.cwd, self._env(),
                                    min(self.timeout_s, 120.0), measure=False)
                    checked[exe] = None if r["returncode"] == 0 else (
                        f"{exe} cannot import torch and the suite's counter (exit {r['returncode']}): "
                        + (r["stderr_tail"].splitlines() or [""])[-1])
            out[part] = checked[exe]
        return out

    # -- one call --------------------------------------------------------------------------------------
    def _run(self, part: str, values: dict, count: bool) -> dict | None:
        argv = _format(self.commands[part], {**values, "python": sys.executable}, part)
        count_out = self.tmp / f"count-{part}.json" if count and self.macs_not_counted[part] is None else None
        if count_out is not None:
            count_out.unlink(missing_ok=True)
        r = run_process(argv, self.cwd, self._env(count_out, "encoder" if part == "encode" else "decoder"),
                        self.timeout_s)
        self.runs.append({"part": part, "counted": count_out is not None,
                          **{k: r[k] for k in ("wall_s", "maxrss_mib", "peak_source", "gpu_peak_mib", "gpu_note")}})
        if r["timed_out"]:
            raise CommandError(f"{part} command timed out after {self.timeout_s:g} s: {' '.join(argv)}\n{r['stderr_tail']}")
        if r["returncode"] != 0:
            raise CommandError(f"{part} command exited with status {r['returncode']}: {' '.join(argv)}\n"
                               f"{r['stderr_tail']}")
        if count_out is None:
            return None
        if not count_out.is_file():
            raise CommandError(f"{part} command ended without the counter's result (os._exit?): {' '.join(argv)}")
        return json.loads(count_out.read_text())

    def _encode(self, image: torch.Tensor, count: bool) -> tuple[bytes, dict | None]:
        h, w = image.shape[-2:]
        src, bits_path = self.tmp / "input.png", self.tmp / "bitstream.bin"
        write_png(image, src)
        bits_path.unlink(missing_ok=True)
        counted = self._run("encode", self._values(src, bits_path, self.tmp / "output.png", w, h), count)
        if not bits_path.is_file():
            raise CommandError(f"the encode command wrote no bitstream ({bits_path.name})")
        bits = bits_path.read_bytes()
        self._size[bits] = (w, h)
        return bits, counted

    def _decode(self, bits: bytes, count: bool, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict | None]:
        w, h = size or self._size.get(bits) or self.size_hint or (0, 0)
        bits_path, out = self.tmp / "bitstream-dec.bin", self.tmp / "output.png"
        bits_path.write_bytes(bits)
        out.unlink(missing_ok=True)
        counted = self._run("decode", self._values(self.tmp / "input.png", bits_path, out, w, h), count)
        if not out.is_file():
            raise CommandError(f"the decode command wrote no picture ({out.name})")
        x_hat = read_png(out, w, h) if w and h else _read_any_png(out)
        return x_hat.to(self.device), counted

    size_hint: tuple[int, int] | None = None   # (W, H) of a bitstream the codec did not encode itself (verify)

    def _values(self, src: Path, bits: Path, out: Path, w: int, h: int) -> dict:
        return {"input": str(src), "bitstream": str(bits), "output": str(out), "target_bpp": f"{self.target_bpp:g}",
                "target_bpp_x100": str(round(self.target_bpp * 100)), "width": str(w), "height": str(h)}

    # -- the codec --------------------------------------------------------------------------------------
    def encode(self, image: torch.Tensor) -> bytes:
        return self._encode(image, False)[0]

    def decode(self, bitstream: bytes) -> torch.Tensor:
        return self._decode(bitstream, False)[0]

    def count_encode(self, image: torch.Tensor) -> tuple[bytes, dict | None]:
        """encode() with the injected counter: (bitstream, the child's count as a PartCount dict, or None)."""
        return self._encode(image, True)

    def count_decode(self, bitstream: bytes) -> tuple[torch.Tensor, dict | None]:
        return self._decode(bitstream, True)


def _read_any_png(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return read_png(path, *im.size)


def build(rate, device: torch.device | str = "cpu") -> CommandCodec:
    return CommandCodec(rate, torch.device(device))

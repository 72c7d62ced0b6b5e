#!/usr/bin/env bash
# jpegai-profile GPU check (issue 19): every GPU path of the suite in one call of under 9 minutes.
# Prints PASS / FAIL / SKIP / INFO lines and a closing "SUMMARY pass=N fail=N skip=N"; exit status 1 when
# anything FAILed. Run from the repository root:   PY=python3 bash benchmarks/gpu_check.sh
#
# The device machine has its own torch (2.11, CUDA) and reaches no registry. Carry the suite's missing
# pure dependencies as wheels in ./wheels (an ignored folder: name it in `carry`) and they are installed
# here with `pip install --no-deps --no-index`. Make them on a machine with a registry, for the device's
# Python (the first INFO line of this script prints it; cp312 below is an example):
#   mkdir -p wheels && cd wheels
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       pydantic pydantic-core annotated-types typing-inspection typing-extensions \
#       nvidia-ml-py psutil safetensors
#   pip wheel --no-deps -w . ..            # the suite itself, as a wheel
# (numpy, scikit-image, scipy, pillow usually come with the device's torch image; the INFO line
# "imports" names what is missing. The wheel is installed --no-deps, so its torch>=2.13 pin is not
# enforced; PYTHONPATH=$PWD keeps the working tree's code the one under test either way.)
# Without a CUDA device (or on a CPU-only machine) every GPU step prints SKIP and the script exits 0.

set -u
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$OUT"
T0=$(date +%s)
PASS=0; FAIL=0; SKIP=0
line() {  # line KIND text...: count and print one result line
    case "$1" in PASS) PASS=$((PASS+1));; FAIL) FAIL=$((FAIL+1));; SKIP) SKIP=$((SKIP+1));; esac
    echo "$@"
}
count_lines() {  # count the PASS/FAIL/SKIP lines a step printed into file $1 (and print them)
    cat "$1"
    PASS=$((PASS + $(grep -c '^PASS' "$1"))); FAIL=$((FAIL + $(grep -c '^FAIL' "$1"))); SKIP=$((SKIP + $(grep -c '^SKIP' "$1")))
}

# -- set-up -----------------------------------------------------------------------------------------
echo "INFO $($PY --version 2>&1) at $(command -v $PY); out $OUT"
if ls wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-deps --no-index wheels/*.whl >"$OUT/pip.log" 2>&1 \
        && line INFO "installed $(ls wheels/*.whl | wc -l) carried wheels (--no-deps)" \
        || line FAIL "pip install of wheels/*.whl: $(tail -n 3 "$OUT/pip.log" | tr '\n' ' ')"
fi
$PY - <<'EOF'
import importlib
missing = []
for m in ("torch", "pydantic", "numpy", "psutil", "pynvml", "skimage", "safetensors", "scipy", "PIL"):
    try:
        importlib.import_module(m)
    except Exception as exc:
        missing.append(f"{m} ({type(exc).__name__})")
print("INFO imports missing:", ", ".join(missing) or "none")
EOF
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
SUITE=$($PY -c "import profiler.worker, pydantic; print(1)" 2>/dev/null || echo 0)
if [ "$SUITE" != 1 ]; then
    line FAIL "the suite does not import here (missing wheels?): $($PY -c 'import profiler.worker' 2>&1 | tail -n 1)"
fi
if [ "$CUDA" != 1 ]; then
    for step in "unit paths (events, peaks, bisection, NVML, settings)" "pytest tests/test_gpu.py" \
                "GPU profile of submissions/refnet (--min-gpu-memory)" "cpu→cuda interoperability of refnet"; do
        line SKIP "$step: no CUDA device (torch.cuda.is_available() is False)"
    done
    echo "SUMMARY pass=$PASS fail=$FAIL skip=$SKIP ($(( $(date +%s) - T0 )) s)"
    [ "$FAIL" -eq 0 ]; exit
fi
nvidia-smi --query-gpu=name,uuid,driver_version,mig.mode.current,memory.used,memory.total --format=csv,noheader 2>/dev/null \
    | sed 's/^/INFO nvidia-smi: /'
echo "INFO CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF-<unset>}"
$PY -c "import torch,re;f=lambda:int(re.search(r'VmRSS:\s+(\d+)',open('/proc/self/status').read())[1])//1024;a=f();torch.cuda.device_count();b=f();torch.cuda.is_available();torch.zeros(1,device='cuda');print(f'INFO host RSS: device_count() +{b-a} MiB, is_available()+context +{f()-b} MiB, torch', torch.__version__, 'CUDA', torch.version.cuda)"

# -- 1. unit paths, in one process (≤ 120 s) -----------------------------------------------------------
timeout 120 $PY - >"$OUT/unit.txt" 2>&1 <<'EOF'
import gc, os, time, torch
from profiler import memory, timing, worker
MIB, dev = 2**20, torch.device("cuda", torch.cuda.current_device())
def r(name, ok, info=""): print(("PASS " if ok else "FAIL ") + name, info, flush=True)
def t(fn):
    try: fn()
    except ImportError as e: print("SKIP", fn.__name__, e, flush=True)
    except Exception as e: r(fn.__name__, False, f"{type(e).__name__}: {str(e)[:300]}")
a = torch.randn(4096, 4096, device=dev)
def work(): return [a @ a for _ in range(10)][-1]
def events():
    work(); torch.cuda.synchronize(); t0 = time.perf_counter(); work(); torch.cuda.synchronize(); wall = time.perf_counter() - t0
    ev, hw, _ = timing.time_cuda_both(work, 5); m = timing.summarize(ev).median_s
    r("events ~ wall on the current stream", 0.7 < m / wall < 1.3, f"{m*1e3:.1f}/{wall*1e3:.1f} ms")
    r("no gap flagged on one stream", timing.event_wall_gap(m, timing.summarize(hw).median_s) == "")
    s = torch.cuda.Stream()
    def side():
        with torch.cuda.stream(s): work()
    ev, hw, _ = timing.time_cuda_both(side, 3); e, w = timing.summarize(ev).median_s, timing.summarize(hw).median_s
    r("side-stream work flagged as a gap", timing.event_wall_gap(e, w) != "", f"event {e*1e3:.2f} ms, wall {w*1e3:.2f} ms")
def peaks():
    memory.cuda_peak_begin(dev); start = torch.cuda.memory_allocated(dev)
    x = torch.ones(256 * MIB // 4, device=dev); del x
    p = memory.cuda_peak_end(dev, start)
    ws = getattr(torch.backends.cuda, "cublas_workspace_size", lambda: None)()
    r("peak above the part's start == 256 MiB", 256 <= p["above_start_mib"] < 257, f"{p} (allocated before {start/MIB:.1f} MiB incl. cuBLAS workspace)")
    memory.cuda_peak_begin(dev); start = torch.cuda.memory_allocated(dev)
    timing.time_cuda(lambda: torch.ones(64 * MIB // 4, device=dev), 3)
    d = torch.cuda.max_memory_allocated(dev) / MIB - start / MIB
    r("time_cuda holds no previous output", d < 65, f"{d:.1f} MiB for 64 MiB outputs")
    y = torch.ones(64 * MIB // 4, device=dev); del y
    memory.cuda_peak_begin(dev); c = (torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)) / MIB
    r("peak begins with the cache emptied", c < 2, f"{c:.1f} MiB cached")
def bisection():
    cu = memory.TorchCuda(dev); cu.settle(); base = torch.cuda.memory_allocated(dev); need = base / MIB + 512
    call = lambda: float(torch.ones(512 * MIB // 4, device=dev)[-1])
    f = memory.min_cuda_memory(call, dev)
    r("min_cuda_memory, raw call", need <= f["min_mib"] <= need + 20, f"min {f['min_mib']} need {need:.1f} trials {f['trials']} bounds {f['low_mib']}..{f['high_mib']}")
    r("allocated back to the start after OOM trials", torch.cuda.memory_allocated(dev) == base)
    z = torch.ones(1024 * MIB // 4, device=dev); del z
    r("cap lifted afterwards", abs(torch.cuda.get_per_process_memory_fraction(dev) - 1.0) < 1e-9)
    f2 = memory.min_cuda_memory(lambda: worker._call("decode", call), dev)
    r("bisection through worker._call (item 1)", f2["min_mib"] == f["min_mib"] or abs(f2["min_mib"] - f["min_mib"]) <= 4, str(f2["min_mib"]))
def nvml():
    uid = str(torch.cuda.get_device_properties(dev).uuid); s = memory.nvml_snapshot(uid)
    if "error" in s and "not available" in s["error"]: print("SKIP nvml", s["error"]); return
    r("NVML device found by UUID", s.get("mapped_by") == "uuid", f"uuid {uid}: {s}")
    i = memory.nvml_index(dev.index, os.environ.get("CUDA_VISIBLE_DEVICES")); si = memory.nvml_snapshot(None, i)
    print(f"INFO old index mapping gives {si.get('name')} used {si.get('used_mib')} (UUID: {s.get('used_mib')}); SM clock {s.get('sm_clock_mhz')} MHz; processes {s.get('processes')} own listed {s.get('own_pid_listed')}")
    r("NVML sees some compute process on the device", bool(s.get("processes")), str(s.get("processes")))
def settings():
    print("INFO torch defaults: cudnn.allow_tf32 =", torch.backends.cudnn.allow_tf32, "matmul =", torch.backends.cuda.matmul.allow_tf32)
    s = timing.gpu_settings(False, False)
    r("gpu_settings off", not (s["cudnn_benchmark"] or s["matmul_allow_tf32"] or s["cudnn_allow_tf32"]), str(s))
    x, w = torch.randn(1, 192, 64, 64), torch.randn(192, 192, 5, 5) * 0.05
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=2)
    for tf in (True, False):
        torch.backends.cudnn.allow_tf32 = tf
        e = (torch.nn.functional.conv2d(x.to(dev), w.to(dev), padding=2).double().cpu() - ref).abs().max()
        print(f"INFO conv cuda vs fp64, cudnn TF32={tf}: max err {e:.1e}")
    timing.gpu_settings(False, False)
for fn in (events, peaks, bisection, nvml, settings): t(fn)
EOF
rc=$?; count_lines "$OUT/unit.txt"; [ $rc -eq 124 ] && line FAIL "unit paths: timed out after 120 s"

# -- 2. pytest tests/test_gpu.py, slow worker test included (≤ 180 s) --------------------------------
timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$OUT/pytest.txt" 2>&1
rc=$?; tail -n 15 "$OUT/pytest.txt" | sed 's/^/INFO pytest: /'
case $rc in 0) line PASS "pytest tests/test_gpu.py";; 124) line FAIL "pytest tests/test_gpu.py: timed out";;
            *) line FAIL "pytest tests/test_gpu.py (rc $rc): $(grep -E '^(FAILED|ERROR)' "$OUT/pytest.txt" | head -n 5 | tr '\n' ' ')";; esac

# -- 3. GPU profile of refnet with --min-gpu-memory, and its cpu→cuda interoperability (≤ 200 s) -------
timeout 200 $PY -m profiler submissions/refnet --quick --device all --min-gpu-memory --timeout 180 \
    --out "$OUT/refnet" >"$OUT/refnet.log" 2>&1
rc=$?; echo "INFO refnet rc=$rc: $(tail -c 300 "$OUT/refnet.log" | tr '\n' ' ')"
$PY - "$OUT/refnet/report.json" >"$OUT/refnet.txt" 2>&1 <<'EOF'
import json, sys
def r(name, ok, info=""): print(("PASS " if ok else "FAIL ") + name, info)
try:
    rep = json.load(open(sys.argv[1]))
except Exception as e:
    r("refnet report readable", False, f"{type(e).__name__}: {e}"); sys.exit()
for rate in rep["rates"]:
    tag = f"refnet {rate['target_bpp']} bpp"
    nm = rate.get("not_measured", {})
    r(f"{tag}: rate point ok", rate["status"] == "ok", str(rate.get("error") and rate["error"]["message"][:300]))
    r(f"{tag}: GPU measured", "gpu" not in nm, str(nm.get("gpu")))
    cuda_t = rate.get("timing", {}).get("cuda", {})
    r(f"{tag}: GPU timing of encode and decode", set(cuda_t) >= {"encode", "decode"}, str({k: v["seconds"]["median_s"] for k, v in cuda_t.items()}))
    pic = (rate.get("images") or [{}])[0].get("timing", {}).get("cuda", {}).get("decode", {})
    print(f"INFO {tag}: decode event {pic.get('median_s')} s, host wall {pic.get('host_wall_median_s')} s, gap '{pic.get('event_wall_gap')}', SM {pic.get('sm_clock_mhz')} MHz")
    mem = rate.get("memory", {}).get("cuda", {})
    mins = mem.get("min") or {}
    r(f"{tag}: minimum GPU memory (encode, decode)", set(mins) >= {"encode", "decode"} and "min_gpu_memory" not in nm,
      str({k: (v["min_mib"], v["trials"], v["low_mib"], v["high_mib"]) for k, v in mins.items()}) + " " + str(nm.get("min_gpu_memory")))
    print(f"INFO {tag}: NVML before context {mem.get('nvml_used_before_context_mib')}, after {mem.get('nvml_used_after_mib')}, others {mem.get('nvml_other_processes')}, mapped by {mem.get('nvml_mapped_by')}")
    print(f"INFO {tag}: gpu_settings {rate.get('environment', {}).get('gpu_settings')}, rlimit_data_lifted {rate.get('worker', {}).get('rlimit_data_lifted')}")
    io = rate.get("interop") or {}
    imgs = io.get("images", [])
    r(f"{tag}: interop pair is cpu→cuda", io.get("pair") == "cpu→cuda" and io.get("proxy") is False, str(io.get("pair")))
    r(f"{tag}: cpu→cuda decodes without error", bool(imgs) and not any(i.get("decode_error_b") or i.get("error_a") for i in imgs),
      str([(i["name"], i.get("max_abs_diff_8bit"), i.get("decode_error_b", "")[:80]) for i in imgs]))
    r(f"{tag}: cpu→cuda within 1 code value", bool(imgs) and all((i.get("max_abs_diff_8bit") or 0) <= 1 for i in imgs),
      str([i.get("max_abs_diff_8bit") for i in imgs]))
EOF
count_lines "$OUT/refnet.txt"

echo "SUMMARY pass=$PASS fail=$FAIL skip=$SKIP ($(( $(date +%s) - T0 )) s)"
[ "$FAIL" -eq 0 ]

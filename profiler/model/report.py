"""The typed report: everything a profile measured, as frozen pydantic models.

This is the one thing that crosses from measuring to reading and the only thing written to disk
(`report.json`). Measurement steps return plain values; the worker alone assembles a `RateResult`;
`profiler/derive.py` computes every figure derived from it; renderers, compliance and aggregation read
the model and the derived figures and never change either.

A figure that could not be measured is None in the data and has a `NotMeasured(code, reason)` in the
`not_measured` map of its rate point (or of the report): the code decides, the text explains. Maps whose
keys are data (module names, op names, devices, metric names) are typed maps; every other object is closed
(`extra="forbid"`), so the generated JSON schema has `additionalProperties: false` wherever the types are
closed. The few fields that are free by nature (a rate point's `options`, a rule's check-specific keys and
details) are listed in `OPEN_FIELDS` and the schema test allows only those.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

SCHEMA_MAJOR = 2


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


# -- what was not measured, and errors ----------------------------------------------------------------

class NotMeasuredCode(str, enum.Enum):
    """Why a figure is missing. Decisions (compliance, renderers) read the code, never the text."""

    NO_DEVICE = "no-device"              # the machine has no such device (no CUDA GPU)
    NOT_REQUESTED = "not-requested"      # the run was told not to measure it (--device cpu)
    FAILED = "failed"                    # it was attempted and failed (the reason says why)
    NOT_COUNTED = "not-counted"          # a count could not be made, or is incomplete
    NOT_AVAILABLE = "not-available"      # the codec does not provide what the measurement needs
    DISAGREES = "disagrees"              # a cross-check found the figure unreliable
    OLDER_REPORT = "older-report"        # the report was written by a version that did not measure it
    NOT_APPLICABLE = "not-applicable"    # the figure has no meaning here (an anchor's complexity)


class NotMeasured(Frozen):
    code: NotMeasuredCode
    reason: str


class ErrorKind(str, enum.Enum):
    SUBMISSION = "submission"
    INPUT = "input"
    MEMORY = "memory"
    TIMEOUT = "timeout"
    CRASH = "crash"
    SUITE = "suite"


class ErrorRecord(Frozen):
    """Why a rate point failed: the stage, one message, and the submission's own traceback/stderr."""

    kind: ErrorKind
    stage: str
    message: str
    traceback: str = ""
    stderr_tail: str = ""


# -- counts -------------------------------------------------------------------------------------------

class ScopeCost(Frozen):
    macs: int
    vm_macs: int
    bias: int
    elements: dict[str, int] = Field(default_factory=dict)


class OpCount(Frozen):
    calls: int
    macs: int


class PartCount(Frozen):
    """What one counted call (an encode or a decode) executed, per module and per op."""

    macs: int
    complete: bool
    per_module: dict[str, ScopeCost] = Field(default_factory=dict)
    ops: dict[str, OpCount] = Field(default_factory=dict)
    uncounted: dict[str, int] = Field(default_factory=dict)
    uncounted_at: dict[str, list[str]] = Field(default_factory=dict)
    uncounted_why: dict[str, str] = Field(default_factory=dict)       # op → why it has no count
    decomposed: dict[str, int] = Field(default_factory=dict)          # op counted through its parts → calls
    unseen: list[str] = Field(default_factory=list)                   # what the counter could not see, in words
    wall_s: float | None = None             # the counted call's wall time, the counter's bookkeeping excluded
    ops_s: float | None = None              # of it, inside dispatched ops
    outside_ops_share: float | None = None  # 1 − ops_s / wall_s: python, numpy, C++ extensions, entropy coders
    largest_rgb_hw: tuple[int, int] | None = None   # the picture as coded (padding included), from op outputs


class MetaCheck(Frozen):
    """The decoder networks counted on meta at a test picture's size against that picture's real decode."""

    image: str
    agree: bool | None
    width: int | None = None
    height: int | None = None
    meta_macs_decoder: int | None = None
    real_macs_decoder: int | None = None
    note: str = ""


class MeasuredOn(Frozen):
    """The rate point a shared count was measured on (profiler/counting/reuse.py: same networks, same real
    counts on every test picture)."""

    index: int
    target_bpp: float


class PartSource(Frozen):
    """How one part of a resolution entry was obtained (profiler/counting/resolutions.py)."""

    # "meta networks", "networks on real tensors", "test picture", "replay", "real call", "not counted"
    method: str
    measured_on: MeasuredOn | None = None     # taken from this rate point's entry (same networks)
    note: str = ""


class Resolution(Frozen):
    """One profile.toml resolution: the codec's encoder and decoder counted at W×H, and how."""

    width: int
    height: int
    method: str
    seconds: float
    note: str = ""
    encoder: PartCount | None = None
    decoder: PartCount | None = None
    meta_vs_real: MetaCheck | None = None
    parts: dict[Literal["encoder", "decoder"], PartSource] = Field(default_factory=dict)


class ModuleDifference(Frozen):
    module: str
    type: str
    ours: int
    theirs: int
    difference: int


class CounterResult(Frozen):
    total: int | None
    error: str = ""
    relative_difference: float | None = None
    modules: list[ModuleDifference] = Field(default_factory=list)
    unattributed: int | None = None
    seconds: float | None = None
    unsupported_ops: dict[str, int] | None = None
    outside_modules: int | None = None


class CrossCheckPart(Frozen):
    error: str = ""
    ours_strict: int | None = None
    ours_vm: int | None = None
    ours_complete: bool | None = None
    counters: dict[str, CounterResult] = Field(default_factory=dict)
    explanations: list[str] = Field(default_factory=list)
    flagged: bool = False
    measured_on: MeasuredOn | None = None     # shared: measured on this rate point (same networks)


class CrossCheck(Frozen):
    width: int
    height: int
    forward: str
    note: str = ""
    encoder: CrossCheckPart | None = None
    decoder: CrossCheckPart | None = None


# -- timing and memory --------------------------------------------------------------------------------

class SecondsStats(Frozen):
    """Median, extremes and quartiles of N timed values (seconds)."""

    n: int
    median_s: float
    min_s: float
    max_s: float
    q1_s: float
    q3_s: float
    iqr_s: float


class TimingStats(SecondsStats):
    """One picture's timed calls of one part on one device (seconds), every value kept."""

    values_s: list[float] = Field(default_factory=list)
    ms_per_mpx: float | None = None
    # CUDA only: the figures above are event times (wall time on the device's current stream); beside
    # them the host's perf_counter over the same synchronised window, a flag where the two differ, and
    # the SM clock NVML reported after the part.
    host_wall_median_s: float | None = None
    host_wall_values_s: list[float] | None = None
    event_wall_gap: str = ""
    sm_clock_mhz: int | None = None


class PlainStats(Frozen):
    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float
    iqr: float


class RateTiming(Frozen):
    """A rate point's timing of one part on one device: statistics over its pictures' medians."""

    images: int
    runs: int
    seconds: SecondsStats
    ms_per_mpx: PlainStats


class MemoryPeak(Frozen):
    """Peaks of one part on one device (MiB). CPU: resident set; CUDA: allocator and NVML."""

    peak_mib: float | None = None
    above_baseline_mib: float | None = None
    baseline_mib: float | None = None
    above_call_start_mib: float | None = None
    per_call: bool | None = None
    max_allocated_mib: float | None = None
    max_reserved_mib: float | None = None
    model_allocated_mib: float | None = None
    nvml_used_mib: float | None = None
    above_start_mib: float | None = None     # CUDA: max_allocated minus what was allocated when the part began


class MinGpuMemory(Frozen):
    image: str
    min_mib: float
    largest_failing_mib: float | None
    resolution_mib: float
    trials: int
    device_total_mib: float
    unlimited_allocated_mib: float | None = None   # peak allocated of the uncapped trial: the lower bound
    unlimited_reserved_mib: float | None = None    # peak reserved of the uncapped trial: the upper bound
    allocated_before_mib: float | None = None      # allocated before the call (weights...), inside the cap
    low_mib: float | None = None
    high_mib: float | None = None
    alloc_conf: str | None = None                  # PYTORCH_CUDA_ALLOC_CONF in force
    definition: str = ""                           # what the figure is, in words


class DeviceMemory(Frozen):
    encode: MemoryPeak | None = None
    decode: MemoryPeak | None = None
    min: dict[str, MinGpuMemory] | None = None
    device_uuid: str | None = None                       # torch's UUID of the device measured on
    nvml_mapped_by: str | None = None                    # "uuid" or "index" (through CUDA_VISIBLE_DEVICES)
    nvml_note: str = ""                                  # why NVML figures are missing, other processes
    nvml_used_before_context_mib: float | None = None    # device used memory before this worker's context
    nvml_used_after_mib: dict[str, float | None] = Field(default_factory=dict)   # step → device used memory
    nvml_other_processes: list[int] | None = None        # other compute processes NVML listed on the device


# -- pictures, interoperability, parameters ------------------------------------------------------------

class Picture(Frozen):
    """One test picture at one rate point: its bitstream, reconstruction, counts, times and peaks."""

    name: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float | None
    bitstream_sha256: str | None = None
    decoded_sha256: str | None = None     # of the 8-bit RGB reconstruction (profiler.quality.to_uint8)
    counts: dict[Literal["encoder", "decoder"], PartCount]
    timing: dict[str, dict[str, TimingStats]] = Field(default_factory=dict)   # device → part → stats
    memory: dict[str, dict[str, MemoryPeak]] = Field(default_factory=dict)    # device → part → peaks
    quality: dict[str, float | None] = Field(default_factory=dict)
    process: dict[str, ProcessRun] = Field(default_factory=dict)   # part → whole-process figures (program codecs)

    @field_validator("counts")
    @classmethod
    def _both_parts(cls, v):
        if set(v) != {"encoder", "decoder"}:
            raise ValueError("a picture holds the counts of its encode and of its decode: keys encoder, decoder")
        return v


class ProcessRun(Frozen):
    """A program codec's command timed as a whole process (profiler/adapters/command.py): interpreter
    start, imports and weight loading included, so never put beside or ranked against in-process times."""

    timing: TimingStats
    peak_rss_mib: float | None = None     # max over the runs of the process tree's peak from the kernel
    peak_source: str = "wait4 ru_maxrss"  # or "cgroup v2 memory.peak" (profiler/adapters/process_memory.py)
    gpu_peak_mib: float | None = None     # its processes' GPU memory peak (NVML accounting)
    gpu_not_measured: str | None = None   # why there is no GPU figure (no CUDA device, accounting off)
    counted_wall_s: float | None = None   # the counted run (injected counter: slower)


class InteropImage(Frozen):
    name: str
    width: int
    height: int
    bytes: int | None = None
    bpp: float | None = None
    a: dict[str, float | None] | None = None
    b: dict[str, float | None] | None = None
    max_abs_diff: float | None = None
    max_abs_diff_8bit: int | None = None
    psnr_drop_db: float | None = None
    error_a: str = ""
    decode_error_b: str = ""
    traceback_b: str = ""


class Interop(Frozen):
    pair: str
    proxy: bool
    note: str = ""
    a_runs: str = ""
    build_error: str = ""
    images: list[InteropImage] = Field(default_factory=list)


class Params(Frozen):
    encoder: int
    decoder: int
    model: int
    buffers_decoder: int = 0
    dtypes: dict[str, dict[str, int]] = Field(default_factory=dict)
    fingerprints: dict[str, int] = Field(default_factory=dict)


class WeightsInfo(Frozen):
    file: str | None
    sha256: str | None
    source: str


class OffendingParameter(Frozen):
    name: str
    dtype: str
    numel: int
    reason: str


class Offending(Frozen):
    count: int = 0
    numel: int = 0
    parameters: list[OffendingParameter] = Field(default_factory=list)
    error: str = ""


class PrecisionCheck(Frozen):
    declared: dict[str, str]
    weights_dtypes: dict[str, dict[str, int]] = Field(default_factory=dict)
    offending: dict[str, Offending] | None = None


class WorkerLimits(Frozen):
    timeout_s: float
    memory_limit_mib: int
    memory_enforced_by: list[str] = Field(default_factory=list)
    processes_ended_by: list[str] = Field(default_factory=list)   # how what the worker started is ended


class SlotHold(Frozen):
    """One timed phase's timing slot (profiler/slots.py), as the runner granted it: the host, the slot's
    number there, the CPUs the phase was pinned to, how long the worker waited for it and held it, and the
    target rates of the other rate points whose workers ran on this host meanwhile (their untimed work, on
    other cores; None where the pool cannot see the host's other work, e.g. on a cluster)."""

    phase: str                  # "cpu" | "gpu"
    host: str
    index: int
    cores: list[int]
    waited_s: float
    held_s: float
    beside: list[float] | None = None


class WorkerInfo(Frozen):
    seed: int | None = None
    limits: WorkerLimits | None = None
    returncode: int | None = None
    model_loaded_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    pid: int | None = None
    wall_s: float | None = None
    rlimit_data_lifted: bool | None = None   # RLIMIT_DATA (soft) lifted before the GPU phase
    restarts: list[str] = Field(default_factory=list)   # verify: a worker died on an item, which one, why
    slots: list[SlotHold] = Field(default_factory=list)  # the timing slots its timed phases ran in
    cpus: list[int] | None = None       # the CPUs its untimed work ran on (the slots' cores excluded)
    # the timing slots' cores its untimed work could also run on while no timed phase held them (slots.py)
    lent_cores: list[int] | None = None
    # how its process was started: "zygote" (forked from the profile's zygote, profiler/zygote.py) or
    # "fresh interpreter"; None in reports from before either
    started_from: str | None = None
    # the installed packages an earlier worker's submission imported that the zygote had imported before
    # forking this one (still listed in `environment.submission_imported`)
    preloaded: list[str] = Field(default_factory=list)


class UntimedStep(Frozen):
    """One untimed step of a rate point (profiler/untimed.py): the torch threads it ran with (raised to
    the worker's cores; timed calls keep `timing.threads`) and its wall time, summed over its calls."""

    threads: int
    seconds: float
    calls: int = 1


class GpuSettings(Frozen):
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    matmul_allow_tf32: bool
    cudnn_allow_tf32: bool


class WorkerEnvironment(Frozen):
    torch_threads: int | None = None
    torch_interop_threads: int | None = None
    cpu_affinity: int | None = None
    env: dict[str, str | None] = Field(default_factory=dict)
    submission_imported: dict[str, str] = Field(default_factory=dict)
    # the top-level modules of those distributions the submission imported, each found in its
    # distribution's files (environment.installed_modules): what the zygote may import for later workers
    submission_modules: list[str] = Field(default_factory=list)
    gpu_settings: GpuSettings | None = None
    # the JPEG AI metrics (profiler/metrics.py) this worker could not compute, key → why; {} all of them;
    # None in reports from before. The report's `metrics` map takes its `measured` from these.
    metrics_unavailable: dict[str, str] | None = None


class HostInfo(Frozen):
    """The machine one rate point's worker ran on (profiler/environment.py `host_fingerprint`): what its
    timings depend on. Rate points of one report timed on different CPU models or torch builds are
    flagged (derive.mixed_hosts); `aggregate` compares them across reports."""

    hostname: str
    cpu_model: str | None = None
    torch: str | None = None            # torch.__version__
    torch_git: str | None = None        # torch.version.git_version: the build, not only the release
    torch_variant: str | None = None    # CPU, CUDA or ROCm


class VerifyGpu(Frozen):
    """A submitted bitstream decoded on the GPU (verify on a CUDA machine): the GPU picture against the CPU
    one (interoperability on the proponent's own bitstreams), against the original, timed, its peaks."""

    device: str | None = None
    decoded_ok: bool = False
    problem: str = ""                           # one line naming the bitstream file, when it did not decode
    bit_exact_vs_cpu: bool | None = None
    max_abs_diff_vs_cpu: int | None = None      # 8-bit code values, GPU picture vs the CPU picture
    max_abs_diff_float: float | None = None     # [0, 1] scale, before rounding to 8 bits
    psnr_vs_cpu_db: float | None = None         # between the two 8-bit pictures (inf when identical)
    psnr_rgb: float | None = None               # the GPU picture against the original
    timing: TimingStats | None = None           # the decode, event-timed (host wall time beside)
    memory: MemoryPeak | None = None


class VerificationItem(Frozen):
    """One original × rate of a delivery (`jpegai-profile verify`): what was submitted and what the
    submission's own decoder and encoder made of it. Facts only; compliance applies the limits."""

    original: str
    target_bpp: float
    bitstream: str | None = None          # the file, as found in the delivery
    bitstream_present: bool = False
    problems: list[str] = Field(default_factory=list)      # one line each, naming the file
    bytes: int | None = None
    bpp: float | None = None              # 8 × bytes / (W × H of the original)
    decoded_ok: bool = False              # the submission's decoder decoded it
    psnr_rgb: float | None = None         # the decoder's picture against the original
    decoded: str | None = None            # the submitted decoded picture
    decoded_bit_exact: bool | None = None
    decoded_max_abs_diff: int | None = None     # 8-bit code values, decoder's picture vs the submitted one
    decoded_psnr_db: float | None = None        # between them (inf when identical)
    reencoded_bytes: int | None = None
    encoder_identical: bool | None = None       # the re-encoded bitstream has the submitted bytes
    failure: Literal["crash", "timeout", "memory"] | None = None   # the worker died on this item (problems say how)
    gpu: VerifyGpu | None = None
    gpu_not_measured: NotMeasured | None = None     # why there is no GPU decode (e.g. no CUDA device)


# -- compressed-domain tasks (profiler/tasks.py) ------------------------------------------------------

class TaskComposition(Frozen):
    """How a decoded-anchor pipeline was obtained without running it again (profiler/tasks.py): its
    decode() of the bitstream — the rate point's own decode of that picture (its counted run and timed
    calls: the same call) or, where the task codes another picture (super-resolution's quarter
    picture), that decode measured once in the task for all its anchors — followed by the anchor on the
    original picture of the same shape (the `original` pipeline beside it: the suite's anchor networks
    do the same work whatever the pixel values). Counts are the parts' summed per module; timings the
    parts' figures summed (median + median, …; `timing.summed`); the CPU peak the larger of the parts'
    peaks above their baselines (they run one after the other)."""

    decode: Literal["rate point", "task"]
    anchor: Literal["original"] = "original"


class TaskPipeline(Frozen):
    """One pipeline on one picture, counted as one call (strict and vm, per module), then timed; or, for
    a decoded anchor, composed of measured parts (`composed_of`)."""

    macs: int                              # strict multiply-accumulates of the whole pipeline
    vm_macs: int                           # the JPEG AI reference software's convention
    complete: bool
    count: PartCount                       # per module and per op
    params: int                            # parameters of the networks the pipeline runs (shared ones once)
    timing: dict[str, TimingStats] = Field(default_factory=dict)     # device → timed runs
    memory: dict[str, MemoryPeak] = Field(default_factory=dict)      # device → peak during the timed runs
    # An anchor on the original picture is the same call at every rate point: measured once per profile,
    # on this rate point, and taken by the others.
    measured_on: MeasuredOn | None = None
    composed_of: TaskComposition | None = None


class TaskAnchorRun(Frozen):
    """An anchor network on one picture: after the full decode() (decoded) and on the original (original)."""

    decoded: TaskPipeline
    original: TaskPipeline


class TaskPicture(Frozen):
    image: str
    width: int                             # the test picture
    height: int
    coded_width: int                       # what was coded (super-resolution: the ×4-down-scaled picture)
    coded_height: int
    output_pixels: int                     # kMAC/px divides by these: the original's (SR: the ×4 output's)
    bytes: int
    latent: TaskPipeline
    anchors: dict[str, TaskAnchorRun] = Field(default_factory=dict)   # anchor name → its two pipelines
    # the decode() of this task's bitstream counted and timed here: the decode part of the decoded anchors
    # whose `composed_of.decode` is "task" (None where it is the rate point's own decode of the picture)
    decode: TaskPipeline | None = None
    synthesis_scopes: list[str] = Field(default_factory=list)        # must stay empty: synthesis in the latent pipeline


class TaskAnchorInfo(Frozen):
    name: str
    description: str
    params: int


class TaskRate(Frozen):
    """One [[tasks]] entry at one rate point: its pipelines on the first pictures, or why not."""

    name: str
    kind: Literal["classification", "super-resolution", "denoising", "foreground"]
    entry: str
    params: int | None = None              # the task network alone
    anchors: list[TaskAnchorInfo] = Field(default_factory=list)
    synthesis_check: str = ""              # how synthesis scopes were recognised
    pictures: list[TaskPicture] = Field(default_factory=list)
    accuracy: Literal["not measured"] = "not measured"   # random initialisation: complexity only
    error: ErrorRecord | None = None
    not_measured: dict[str, NotMeasured] = Field(default_factory=dict)


class RateResult(Frozen):
    """One rate point (one model): everything its worker measured, or why it failed."""

    index: int
    target_bpp: float
    status: Literal["ok", "failed"] = "ok"
    error: ErrorRecord | None = None
    params: Params | None = None
    weights: WeightsInfo | None = None
    precision: PrecisionCheck | None = None
    threads: int | None = None
    images: list[Picture] = Field(default_factory=list)
    resolutions: list[Resolution] = Field(default_factory=list)
    crosscheck: CrossCheck | None = None
    not_measured: dict[str, NotMeasured] = Field(default_factory=dict)
    worker: WorkerInfo = Field(default_factory=WorkerInfo)
    timing: dict[str, dict[str, RateTiming]] = Field(default_factory=dict)     # device → part → stats
    memory: dict[str, DeviceMemory] = Field(default_factory=dict)             # device → peaks over pictures
    environment: WorkerEnvironment = Field(default_factory=WorkerEnvironment)
    interop: Interop | None = None
    verification: list[VerificationItem] = Field(default_factory=list)
    tasks: list[TaskRate] = Field(default_factory=list)    # compressed-domain tasks (profiler/tasks.py)
    # step ("quality", "interop proxy", "resolutions", "cross-check", …) → threads and seconds
    untimed: dict[str, UntimedStep] = Field(default_factory=dict)
    # part → fingerprint of its networks (profiler/counting/reuse.py), for sharing counts across rate points
    networks: dict[str, str] = Field(default_factory=dict)
    host: HostInfo | None = None        # the machine its worker ran on (None in older reports)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# -- the report ---------------------------------------------------------------------------------------

class ManifestRate(Frozen):
    index: int
    target_bpp: float
    weights: str | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)       # the codec's own: free by nature


class SubmissionInfo(Frozen):
    directory: str
    proponent: str
    codec: str
    version: str
    entry: str
    precision: dict[str, str]
    rates: list[ManifestRate] = Field(default_factory=list)
    files_sha256: str = ""
    # Each file's sha256 by its path in the submission directory, as the profile began (what --resume
    # compares; files created later, a codec's cache, are not in it). Empty in older reports.
    files: dict[str, str] = Field(default_factory=dict)
    encoder_deterministic: bool = True


class Rule(Frozen):
    """A [[rules]] table of profile.toml; check-specific keys (device, metrics, rates) are optional."""

    model_config = ConfigDict(frozen=True, extra="allow")
    id: str
    check: str
    level: Literal["mandatory", "recommended"] = "mandatory"
    limit: float | None = None
    description: str = ""


class ImagesCond(Frozen):
    source: str
    builtin: list[str]
    limit: int | None = None


class CountingCond(Frozen):
    convention: str
    resolutions: list[tuple[int, int]]


class TimingCond(Frozen):
    threads: int
    warmup: int
    repeats: int
    devices: list[str]
    cudnn_benchmark: bool = False
    allow_tf32: bool = False
    min_gpu_memory: bool = False
    slots_per_host: int = 1
    lend_idle_slots: bool = True


class WorkerCond(Frozen):
    timeout_s: float
    memory_limit_mib: int
    zygote: bool = False     # reports from before it: every worker was a fresh interpreter


class TasksCond(Frozen):
    measure: bool = True
    images: int = 1
    repeats: int = 1


class Conditions(Frozen):
    name: str
    target_rates: list[float]
    max_rate_overshoot: float
    images: ImagesCond
    counting: CountingCond
    timing: TimingCond
    worker: WorkerCond
    tasks: TasksCond = Field(default_factory=TasksCond)
    source: str = ""
    rules: list[Rule] = Field(default_factory=list)


class TorchBuild(Frozen):
    version: str
    git: str | None = None
    cuda: str | None = None
    hip: str | None = None
    variant: str
    mkldnn_available: bool
    mkl_available: bool
    openmp_available: bool
    mkl_version: str | None = None
    onednn_version: str | None = None
    openmp_version: str | None = None
    cpu_capability_version: str | None = None
    blas_version: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    cudnn_runtime: int | None = None


class GpuInfo(Frozen):
    index: int
    name: str
    total_mib: float
    capability: str
    multiprocessors: int
    driver: str | None = None


class Environment(Frozen):
    """Where the figures were measured (profiler/environment.py), merged with what the workers used."""

    cpu_model: str | None = None
    cpu_count: int | None = None
    cpu_physical_cores: int | None = None
    cpu_affinity: int | None = None
    machine: str | None = None
    os: str | None = None
    python: str | None = None
    python_implementation: str | None = None
    torch: str | None = None
    torch_cuda_build: str | None = None
    torch_build: TorchBuild | None = None
    mkldnn: bool | None = None
    mkl: bool | None = None
    threads_configured: int | None = None
    cuda_available: bool | None = None
    cuda_device_count: int | None = None
    gpu_name: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    nvidia_driver: str | None = None
    env: dict[str, str | None] = Field(default_factory=dict)
    packages: dict[str, str | None] = Field(default_factory=dict)
    submission_files_sha256: str | None = None
    packages_submission: dict[str, str] = Field(default_factory=dict)
    threads_used: list[int] = Field(default_factory=list)


class Options(Frozen):
    quick: bool = False
    check: bool = False
    rates: list[float] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    jobs: int = 1       # rate points' workers at once (their timed phases in the timing slots)


class RunInfo(Frozen):
    """How the profile ran: `running` until the last planned rate point is written, then `complete`."""

    state: Literal["running", "complete"] = "running"
    seed: int = 0
    planned_rates: list[float] = Field(default_factory=list)
    resumed_rates: list[float] = Field(default_factory=list)
    limits: WorkerLimits | None = None


class RuleResult(Frozen):
    id: str
    description: str
    level: Literal["mandatory", "recommended"]
    status: Literal["pass", "fail", "warn", "not measured"]
    measured: str
    limit: str
    fix: str
    details: dict[str, JsonValue] = Field(default_factory=dict)      # check-specific: free by nature


class Verdict(Frozen):
    verdict: Literal["pass", "fail", "incomplete"]
    rules_source: str
    rules: list[RuleResult]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


class WorstCase(Frozen):
    """Where a worst case was found: the call it came from (a test picture or a counted resolution)."""

    kmac_px: float
    macs: int
    target_bpp: float
    image: str | None
    width: int
    height: int
    source: str
    complete: bool = True
    coded_width: int | None = None          # the picture as the codec coded it (largest 3-channel op output)
    coded_height: int | None = None
    padding_share: float | None = None      # 1 − W·H / (coded W·H): share of the figure spent on padding


class Summary(Frozen):
    """The summary figures of the standard table (profiler/derive.py), stored for readers of the JSON."""

    rate_points: int
    rate_points_ok: int
    planned_rates: list[float] = Field(default_factory=list)
    missing_rates: list[float] = Field(default_factory=list)   # planned but not (yet) measured
    complete: bool = True
    params_largest_model: int | None = None
    params_largest_model_rate: float | None = None
    params_total: int | None = None
    kmac_px_decoder_worst: float | None = None
    kmac_px_decoder_worst_at: WorstCase | None = None
    kmac_px_encoder_max: float | None = None
    kmac_px_encoder_max_at: WorstCase | None = None


class DeliveryProblem(Frozen):
    file: str
    message: str


class ModelCheck(Frozen):
    """--model-sha256: the submission's files against the hashes of the earlier delivery."""

    file: str
    listed: int
    matched: bool
    problems: list[str] = Field(default_factory=list)


class Verification(Frozen):
    """A `verify` run: which delivery, what was wrong with it as a whole, and which worst case is reported."""

    bitstreams: str
    decoded: str | None = None
    originals: str
    originals_names: list[str] = Field(default_factory=list)
    rate_folders: dict[str, str] = Field(default_factory=dict)      # target (as in the manifest) → folder
    problems: list[DeliveryProblem] = Field(default_factory=list)   # unknown rate folders, stray files
    model: ModelCheck | None = None
    worst_case: str = "the submitted bitstreams (not the suite's own pictures or resolutions)"
    rounding: str = "8-bit RGB: clamp(0, 1) · 255, rounded half to even"


# -- quality metrics, anchors, BD-rates (profiler/metrics.py, profiler/bdrate.py) --------------------

class MetricInfo(Frozen):
    """How one picture metric of `Picture.quality` was computed: package, plane, range, conventions."""

    name: str                   # as the literature names it
    package: str                # the maintained package (or "by hand", with the formula)
    version: str | None = None
    plane: str                  # which picture plane(s) it sees
    range: str                  # the data range handed to the package
    conventions: str = ""       # what is assumed where the quality framework's convention is not known
    # whether the workers that computed `Picture.quality` could compute it (their imports, not this
    # process's); None: no worker has said yet (a report written before its first rate point finished)
    measured: bool | None = True
    reason: str = ""            # why it is not measured, when not


class AnchorInfo(Frozen):
    """The report is an anchor's (`jpegai-profile anchors`): compression figures only, complexity not applicable."""

    substitute_for: str         # the test conditions' anchor this open program stands in for
    program: str                # the programs and their versions
    chroma: str = ""            # chroma format as coded
    note: str = ""


class BdValue(Frozen):
    percent: float | None
    reason: str = ""
    anchor_bpp: tuple[float, float] | None = None     # the anchor curve's bpp range
    test_bpp: tuple[float, float] | None = None       # the submission curve's bpp range
    overlap_bpp: tuple[float, float] | None = None    # the rates both reach


class BdMetric(Frozen):
    metric: str
    form: str                                # how the value enters the BD-rate (dB, negated, as is)
    pictures: dict[str, BdValue] = Field(default_factory=dict)
    mean_percent: float | None = None        # over the pictures where it was computed
    pictures_used: int = 0
    reason: str = ""


class BdComparison(Frozen):
    """The submission's BD-rates against one anchor (profiler/bdrate.py)."""

    anchor: str                              # the anchor report's codec
    anchor_report: str = ""
    substitute_for: str = ""
    method: str = "bjontegaard.bd_rate, pchip (as the JPEG AI scripts)"
    metrics: list[BdMetric] = Field(default_factory=list)
    avg_percent: float | None = None         # "AVG BD": mean over avg_metrics' means
    avg_metrics: list[str] = Field(default_factory=list)
    avg_note: str = ""
    # The anchor's RD points as measured (metric → picture → [(bpp, value)]), for the RD plots.
    anchor_points: dict[str, dict[str, list[tuple[float, float | None]]]] = Field(default_factory=dict)


class Tool(Frozen):
    name: str = "jpegai-profile"
    version: str


class Report(Frozen):
    submission: SubmissionInfo
    conditions: Conditions
    environment: Environment = Field(default_factory=Environment)
    options: Options = Field(default_factory=Options)
    rates: list[RateResult] = Field(default_factory=list)
    summary: Summary | None = None
    compliance: Verdict | None = None
    not_measured: dict[str, NotMeasured] = Field(default_factory=dict)
    run: RunInfo = Field(default_factory=RunInfo)
    verification: Verification | None = None
    metrics: dict[str, MetricInfo] = Field(default_factory=dict)     # Picture.quality key → how computed
    anchor: AnchorInfo | None = None                                 # set on an anchor's report
    bd_rates: list[BdComparison] = Field(default_factory=list)       # against anchors (profile --anchors)
    schema_version: str
    tool: Tool
    created: str

    def ok_rates(self) -> list[RateResult]:
        return [r for r in self.rates if r.ok]


# Fields whose content is free by nature; the schema test allows open objects only here.
OPEN_FIELDS = ("ManifestRate.options", "RuleResult.details", "Rule (extra keys)")


def to_json_value(model: BaseModel) -> Any:
    return model.model_dump(mode="json")

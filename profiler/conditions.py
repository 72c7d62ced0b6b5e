"""profile.toml → a frozen `TestConditions`: rates, images, counting, timing and worker limits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .tomlcheck import finite, get, non_negative, number, positive, read_toml, refuse_unknown

# Shipped in the package (package data), so a wheel install has it; the repository's profile.toml links here.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "profile.toml"

# The mandatory JPEG AI target rates (bpp): used when profile.toml names none and by tests.
JPEGAI_TARGET_RATES = (0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00)


@dataclass(frozen=True)
class ImageSpec:
    source: str = "builtin"            # "builtin" or a directory path
    builtin: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
    limit: int | None = None           # use only the first N images (quick mode)


@dataclass(frozen=True)
class CountingSpec:
    convention: str = "strict"
    resolutions: tuple[tuple[int, int], ...] = ((1920, 1080), (3840, 2160))


@dataclass(frozen=True)
class TimingSpec:
    threads: int = 1
    warmup: int = 1
    repeats: int = 3
    devices: tuple[str, ...] = ("cpu", "cuda")
    cudnn_benchmark: bool = False
    allow_tf32: bool = False
    min_gpu_memory: bool = False       # bisection on the allocator limit per model (memory.min_cuda_memory)
    slots_per_host: int = 1            # timed phases at once on one host, each on its own physical cores
    lend_idle_slots: bool = True       # a free slot's cores run untimed work, taken back before a timed phase


@dataclass(frozen=True)
class WorkerSpec:
    timeout_s: float = 1800.0
    memory_limit_mib: int = 16384
    zygote: bool = True                # fork workers from a process that imported torch and the suite once


@dataclass(frozen=True)
class TasksSpec:
    """[tasks]: compressed-domain task pipelines of a submission's [[tasks]] (profiler/tasks.py)."""

    measure: bool = True               # false: skipped (each rate point says "not requested")
    images: int = 1                    # the first N test pictures (each pipeline costs a ResNet-50 or a WDSR)
    repeats: int = 1                   # timed runs per pipeline and picture (the counted run is the warm-up)


@dataclass(frozen=True)
class TestConditions:
    __test__ = False  # not a pytest test class
    name: str = "jpegai-ctc"
    target_rates: tuple[float, ...] = JPEGAI_TARGET_RATES
    max_rate_overshoot: float = 0.10
    images: ImageSpec = field(default_factory=ImageSpec)
    counting: CountingSpec = field(default_factory=CountingSpec)
    timing: TimingSpec = field(default_factory=TimingSpec)
    worker: WorkerSpec = field(default_factory=WorkerSpec)
    tasks: TasksSpec = field(default_factory=TasksSpec)
    source: str = ""                   # the file these were read from
    rules: tuple[dict, ...] = ()       # [[rules]] tables, read by the compliance engine

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TestConditions":
        return cls(
            name=data["name"],
            target_rates=tuple(data["target_rates"]),
            max_rate_overshoot=data["max_rate_overshoot"],
            images=ImageSpec(data["images"]["source"], tuple(data["images"]["builtin"]),
                             data["images"].get("limit")),
            counting=CountingSpec(data["counting"]["convention"],
                                  tuple(tuple(r) for r in data["counting"]["resolutions"])),
            timing=TimingSpec(**{**data["timing"], "devices": tuple(data["timing"]["devices"])}),
            worker=WorkerSpec(**data["worker"]),
            tasks=TasksSpec(**data.get("tasks", {})),
            source=data.get("source", ""),
            rules=tuple(data.get("rules", ())),
        )


CONVENTIONS = ("strict", "vm")
DEVICES = ("cpu", "cuda")

# The keys profile.toml may hold, per table. Anything else is refused, as submission.toml refuses unknown
# fields: a typo (`repeets = 3`) would otherwise be silently ignored. Extend these when the format grows.
TABLES = {
    "conditions": {"name", "target_rates", "max_rate_overshoot"},
    "images": {"source", "builtin"},
    "counting": {"convention", "resolutions"},
    "timing": {"threads", "warmup", "repeats", "devices", "cudnn_benchmark", "allow_tf32", "min_gpu_memory",
               "slots_per_host", "lend_idle_slots"},
    "worker": {"timeout_s", "memory_limit_mib", "zygote"},
    "tasks": {"measure", "images", "repeats"},
    "rules": set(),  # an array of tables, checked by validate_rules
}

# The checks the compliance engine registers (`profiler.compliance.CHECKS`), listed here so that a bad
# `[[rules]]` entry is refused when the conditions are loaded, before anything is measured, without this
# module importing the engine (imports point downward: compliance imports conditions, not the reverse).
# tests/test_bad_input_upfront.py fails when this list and the engine's registry disagree.
KNOWN_CHECKS = ("bitstreams_complete", "decoded_match", "decoder_kmac_reported", "encoder_match", "interop_bdrate",
                "interop_decode", "model_match", "params_reported", "precision_declared", "precision_weights",
                "rate_overshoot", "rate_points", "runtime", "task_ratio")
RULE_LEVELS = ("mandatory", "recommended")
# Keys a rule may hold: the engine's own (id, check, level, description) and the checks' parameters.
RULE_FIELDS = {"id", "check", "level", "limit", "description", "device", "rates", "metrics"}


def validate_rules(rules: list, path: Path | str) -> tuple[dict, ...]:
    """Every `[[rules]]` entry is a table with a unique non-empty id, a known check, a known level, a
    finite non-negative limit and well-typed parameters; errors name the file and `rules[i].field`."""
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise InputError(path, where, "expected a table ([[rules]])")
        refuse_unknown(rule, RULE_FIELDS, path, f"{where}.")
        rid = rule.get("id")
        if not isinstance(rid, str) or not rid.strip():
            raise InputError(path, f"{where}.id", "missing (expected a non-empty string)" if rid is None
                             else f"expected a non-empty string, got {rid!r}")
        if rid in seen:
            raise InputError(path, f"{where}.id", f"duplicate rule id {rid!r}")
        seen.add(rid)
        chk = rule.get("check")
        if chk not in KNOWN_CHECKS:
            raise InputError(path, f"{where}.check",
                             f"unknown check {chk!r} (known: {', '.join(KNOWN_CHECKS)})" if chk is not None
                             else f"missing (expected one of {', '.join(KNOWN_CHECKS)})")
        level = rule.get("level", "mandatory")
        if level not in RULE_LEVELS:
            raise InputError(path, f"{where}.level", f"expected mandatory or recommended, got {level!r}")
        if "limit" in rule:
            lim = rule["limit"]
            if isinstance(lim, bool) or not isinstance(lim, (int, float)):
                raise InputError(path, f"{where}.limit", f"expected a non-negative number, got {lim!r}")
            finite(lim, path, f"{where}.limit")
            non_negative(lim, path, f"{where}.limit")
        get(rule, "description", str, path, f"{where}.description", "")
        if "device" in rule and rule["device"] not in DEVICES:
            raise InputError(path, f"{where}.device", f"expected one of {', '.join(DEVICES)}, got {rule['device']!r}")
        for j, r in enumerate(get(rule, "rates", list, path, f"{where}.rates", [])):
            positive(number(r, path, f"{where}.rates[{j}]"), path, f"{where}.rates[{j}]")
        for j, m in enumerate(get(rule, "metrics", list, path, f"{where}.metrics", [])):
            if not isinstance(m, str) or not m:
                raise InputError(path, f"{where}.metrics[{j}]", f"expected a metric name, got {m!r}")
    return tuple(rules)


def load_conditions(path: Path | str | None = None) -> TestConditions:
    """Read and validate a profile.toml; every error names the file and the field."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    doc = read_toml(path)
    refuse_unknown(doc, set(TABLES), path, "")
    for table, keys in TABLES.items():
        if table != "rules" and isinstance(doc.get(table), dict):
            refuse_unknown(doc[table], keys, path, f"{table}.")

    cond = get(doc, "conditions", dict, path, "conditions", {})
    rates = get(cond, "target_rates", list, path, "conditions.target_rates", list(JPEGAI_TARGET_RATES))
    if not rates:
        raise InputError(path, "conditions.target_rates", "must list at least one rate")
    clean_rates = []
    for i, r in enumerate(rates):
        clean_rates.append(positive(number(r, path, f"conditions.target_rates[{i}]"), path,
                                    f"conditions.target_rates[{i}]"))
    if len(set(clean_rates)) != len(clean_rates):
        raise InputError(path, "conditions.target_rates", "contains a rate twice")
    overshoot = non_negative(get(cond, "max_rate_overshoot", float, path,
                                 "conditions.max_rate_overshoot", 0.10),
                             path, "conditions.max_rate_overshoot")

    img = get(doc, "images", dict, path, "images", {})
    source = get(img, "source", str, path, "images.source", "builtin")
    if not source.strip():
        raise InputError(path, "images.source", 'must be "builtin" or a directory of PNG files, got ""')
    if source != "builtin" and not Path(source).is_absolute():
        # Relative to this file, as the manifest's paths are to the manifest (the worker runs elsewhere).
        source = str((path.parent / source).resolve())
    builtin = get(img, "builtin", list, path, "images.builtin", list(ImageSpec.builtin))
    if source == "builtin" and not builtin:
        raise InputError(path, "images.builtin", "must name at least one picture (nothing would be measured)")
    for i, name in enumerate(builtin):
        if not isinstance(name, str):
            raise InputError(path, f"images.builtin[{i}]", f"expected a string, got {name!r}")
        if name in builtin[:i]:
            raise InputError(path, f"images.builtin[{i}]", f"names {name!r} twice")

    cnt = get(doc, "counting", dict, path, "counting", {})
    convention = get(cnt, "convention", str, path, "counting.convention", "strict")
    if convention not in CONVENTIONS:
        raise InputError(path, "counting.convention", f"expected one of {', '.join(CONVENTIONS)}, got {convention!r}")
    resolutions = []
    for i, res in enumerate(get(cnt, "resolutions", list, path, "counting.resolutions", [])):
        if (not isinstance(res, list) or len(res) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in res)):
            raise InputError(path, f"counting.resolutions[{i}]",
                             f"expected [width, height] as two positive integers, got {res!r}")
        resolutions.append((res[0], res[1]))

    tim = get(doc, "timing", dict, path, "timing", {})
    threads = positive(get(tim, "threads", int, path, "timing.threads", 1), path, "timing.threads")
    warmup = non_negative(get(tim, "warmup", int, path, "timing.warmup", 1), path, "timing.warmup")
    repeats = positive(get(tim, "repeats", int, path, "timing.repeats", 3), path, "timing.repeats")
    devices = get(tim, "devices", list, path, "timing.devices", ["cpu", "cuda"])
    for i, d in enumerate(devices):
        if d not in DEVICES:
            raise InputError(path, f"timing.devices[{i}]", f"expected one of {', '.join(DEVICES)}, got {d!r}")
    cudnn_benchmark = get(tim, "cudnn_benchmark", bool, path, "timing.cudnn_benchmark", False)
    allow_tf32 = get(tim, "allow_tf32", bool, path, "timing.allow_tf32", False)
    min_gpu_memory = get(tim, "min_gpu_memory", bool, path, "timing.min_gpu_memory", False)
    slots_per_host = positive(get(tim, "slots_per_host", int, path, "timing.slots_per_host", 1), path,
                              "timing.slots_per_host")
    lend_idle_slots = get(tim, "lend_idle_slots", bool, path, "timing.lend_idle_slots", True)

    wrk = get(doc, "worker", dict, path, "worker", {})
    timeout_s = positive(get(wrk, "timeout_s", float, path, "worker.timeout_s", 1800.0), path, "worker.timeout_s")
    mem = positive(get(wrk, "memory_limit_mib", int, path, "worker.memory_limit_mib", 16384),
                   path, "worker.memory_limit_mib")
    zygote = get(wrk, "zygote", bool, path, "worker.zygote", True)

    tsk = get(doc, "tasks", dict, path, "tasks", {})
    tasks = TasksSpec(measure=get(tsk, "measure", bool, path, "tasks.measure", True),
                      images=positive(get(tsk, "images", int, path, "tasks.images", 1), path, "tasks.images"),
                      repeats=positive(get(tsk, "repeats", int, path, "tasks.repeats", 1), path, "tasks.repeats"))

    rules = validate_rules(get(doc, "rules", list, path, "rules", []), path)

    return TestConditions(
        name=get(cond, "name", str, path, "conditions.name", "jpegai-ctc"),
        target_rates=tuple(clean_rates),
        max_rate_overshoot=float(overshoot),
        images=ImageSpec(source=source, builtin=tuple(builtin)),
        counting=CountingSpec(convention=convention, resolutions=tuple(resolutions)),
        timing=TimingSpec(threads=threads, warmup=warmup, repeats=repeats, devices=tuple(devices),
                          cudnn_benchmark=cudnn_benchmark, allow_tf32=allow_tf32, min_gpu_memory=min_gpu_memory,
                          slots_per_host=slots_per_host, lend_idle_slots=lend_idle_slots),
        worker=WorkerSpec(timeout_s=float(timeout_s), memory_limit_mib=mem, zygote=zygote),
        tasks=tasks,
        source=str(path),
        rules=tuple(rules),
    )

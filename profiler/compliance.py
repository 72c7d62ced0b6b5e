"""The rules engine: a Report and the `[[rules]]` of profile.toml → a compliance verdict.

A rule is a table in profile.toml:

    [[rules]]
    id = "rates.overshoot"            # shown to the user, unique
    check = "rate_overshoot"          # which registered check evaluates it (CHECKS below)
    level = "mandatory"               # or "recommended"
    limit = 0.10                      # the check's threshold, where it has one
    description = "…"

Each check is a plain function `(report, cond, rule) -> Finding`, registered in `CHECKS`. The engine turns
a Finding into a `RuleResult` with one of four statuses: `pass`; `fail` (a mandatory rule not met);
`warn` (a recommended rule not met); `not measured` (with the reason). The verdict is `pass` when every
mandatory rule passes, `fail` when a mandatory rule fails, `incomplete` when none fails but a mandatory
rule could not be measured. Measuring never happens here: only the Report is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import derive
from .conditions import DEFAULT_CONFIG, TestConditions
from .conditions import validate_rules as validate_conditions_rules
from .errors import InputError
from .model.report import NotMeasuredCode, RateResult, Report, RuleResult, Verdict
from .precision import KNOWN_FORMS, parse_precision
from .bdrate import bd_value
from .quality import bd_rate

PASS, FAIL, WARN, NOT_MEASURED = "pass", "fail", "warn", "not measured"


@dataclass(frozen=True)
class Finding:
    """What a check found: met (True/False) or None when it could not be measured (then `reason`)."""

    met: bool | None
    measured: str = ""
    limit: str = ""
    fix: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)


Check = Callable[[Report, TestConditions, dict], Finding]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn
    return register


# -- helpers -------------------------------------------------------------------------------------------

def _ok_rates(report: Report) -> list[RateResult]:
    return [r for r in report.rates if r.ok]


def _join(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _no_rates() -> Finding:
    return Finding(None, reason="no rate point was measured")


# -- checks ----------------------------------------------------------------------------------------------

@check("rate_points")
def check_rate_points(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Every mandatory target rate has a rate point in the manifest, and it was profiled without error."""
    targets = [float(t) for t in rule.get("rates", cond.target_rates)]
    declared = [r.target_bpp for r in report.submission.rates]
    by_rate = {r.target_bpp: r for r in report.rates}
    missing = [t for t in targets if not any(derive.same_rate(t, d) for d in declared)]
    failed, unprofiled = [], []
    for t in targets:
        if t in missing:
            continue
        r = next((r for rt, r in by_rate.items() if derive.same_rate(rt, t)), None)
        if r is None:
            unprofiled.append(t)
        elif not r.ok:
            failed.append((t, r.error.message if r.error else "unknown error"))
    have = len(targets) - len(missing)
    measured = f"{have} of {len(targets)} target rates have a rate point"
    limit = "all of " + ", ".join(f"{t:g}" for t in targets) + " bpp"
    if missing or failed:
        fixes = []
        if missing:
            measured += "; missing " + ", ".join(f"{t:g}" for t in missing)
            fixes.append("add a [[rates]] table with target_bpp = " + ", ".join(f"{t:g}" for t in missing))
        if failed:
            measured += "; failed " + "; ".join(f"{t:g} bpp ({msg})" for t, msg in failed)
            fixes.append("fix the error of the rate point(s) " + ", ".join(f"{t:g}" for t, _ in failed))
        return Finding(False, measured, limit, "; ".join(fixes),
                       details={"missing": missing, "failed": [t for t, _ in failed]})
    if unprofiled:
        return Finding(None, measured, limit, reason="not profiled in this run: "
                       + ", ".join(f"{t:g}" for t in unprofiled) + " bpp")
    return Finding(True, measured, limit)


@check("rate_overshoot")
def check_rate_overshoot(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """For every rate point and image: actual bpp ≤ target × (1 + limit); the worst image is reported."""
    overshoot = float(rule.get("limit", cond.max_rate_overshoot))
    ok = _ok_rates(report)
    if not ok or not any(r.images for r in ok):
        return _no_rates()
    worst = None
    over = []
    for r in ok:
        for img in r.images:
            ratio = img.bpp / r.target_bpp
            if worst is None or ratio > worst[0]:
                worst = (ratio, r.target_bpp, img.name, img.bpp)
            if img.bpp > r.target_bpp * (1 + overshoot) * (1 + 1e-12):
                over.append((r.target_bpp, img.name, img.bpp))
    ratio, target, name, bpp = worst
    measured = f"worst: {name} at {target:g} bpp: {bpp:.4f} bpp ({(ratio - 1) * 100:+.1f} %)"
    limit = f"bpp ≤ target × {1 + overshoot:.2f}"
    details = {"worst": {"target_bpp": target, "image": name, "bpp": bpp, "ratio": ratio},
               "over": [{"target_bpp": t, "image": n, "bpp": b} for t, n, b in over]}
    if over:
        rates = sorted({t for t, _, _ in over})
        measured += f"; {len(over)} image(s) over the limit"
        fix = ("lower the rate of the " + ", ".join(f"{t:g}" for t in rates)
               + " bpp point(s) (a coarser quantiser or a model trained for a lower rate)")
        untrained = sorted({r.target_bpp for r in ok if r.target_bpp in rates
                            and r.weights is not None and "random" in r.weights.source.lower()})
        if untrained:
            fix += ("; the weights of " + ", ".join(f"{t:g}" for t in untrained)
                    + " bpp are a random initialisation: train the model (rates of untrained weights are meaningless)")
        return Finding(False, measured, limit, fix, details=details)
    return Finding(True, measured, limit, details=details)


@check("precision_declared")
def check_precision_declared(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Each part declares its precision in a known form, with its number of bits."""
    declared = report.submission.precision
    bad = []
    for part in ("encoder", "decoder"):
        value = declared.get(part)
        if value is None or parse_precision(str(value)) is None:
            bad.append(f"{part} = {value!r}")
    measured = ", ".join(f"{p}: {declared.get(p)}" for p in ("encoder", "decoder"))
    if bad:
        return Finding(False, measured, KNOWN_FORMS,
                       "declare [precision] " + "; ".join(bad) + f" as one of {KNOWN_FORMS}")
    return Finding(True, measured, KNOWN_FORMS)


@check("precision_weights")
def check_precision_weights(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """The parameters the codec holds are representable in the declared precision (names the offenders)."""
    ok = _ok_rates(report)
    if not ok:
        return _no_rates()
    declared = report.submission.precision
    problems: dict[str, dict] = {}
    unchecked = []
    for r in ok:
        offending = r.precision.offending if r.precision is not None else None
        if offending is None:
            unchecked.append(r.target_bpp)
            continue
        for part, found in offending.items():
            if found.error:
                problems.setdefault(part, {"count": 0, "numel": 0, "names": [], "error": found.error})
                continue
            if found.count:
                p = problems.setdefault(part, {"count": 0, "numel": 0, "names": [], "rates": []})
                p["count"] = max(p["count"], found.count)
                p["numel"] = max(p["numel"], found.numel)
                p.setdefault("rates", []).append(r.target_bpp)
                for o in found.parameters:
                    label = f"{o.name} ({o.dtype}, {o.numel})"
                    if label not in p["names"]:
                        p["names"].append(label)
    limit = "every parameter representable in the declared precision"
    if problems:
        parts = []
        for part, p in problems.items():
            if p.get("error"):
                parts.append(f"{part}: {p['error']}")
            else:
                parts.append(f"{part} declared {declared.get(part)}: {p['count']} parameter(s), {p['numel']:,} "
                             f"values are not: {_join(p['names'])}")
        fix = ("declare the precision the parameters really have (e.g. " +
               ", ".join(sorted({o.split('(')[1].split(',')[0] for p in problems.values() for o in p['names']}))
               + "), or convert the parameters to the declared precision")
        return Finding(False, "; ".join(parts), limit, fix, details={"offending": problems})
    if unchecked:
        return Finding(None, limit=limit, reason="the report has no parameter check for "
                       + ", ".join(f"{t:g}" for t in unchecked) + " bpp (made by an older version)")
    return Finding(True, "encoder " + str(declared.get("encoder")) + ", decoder " + str(declared.get("decoder"))
                   + ": all parameters consistent", limit)


@check("runtime")
def check_runtime(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Encode and decode time measured on `device` for every rate point (median over images)."""
    device = rule.get("device", "cpu")
    ok = _ok_rates(report)
    if not ok:
        return _no_rates()
    missing, reasons, absent, enc, dec = [], set(), [], [], []
    whole = []
    for r in ok:
        e, d = derive.median_time(r, device, "encode"), derive.median_time(r, device, "decode")
        if (e is None or d is None) and device == "cpu":
            # a program codec: its commands timed as whole processes (their own figure, labelled as such)
            e, d = derive.median_process_time(r, "encode"), derive.median_process_time(r, "decode")
            if e is not None and d is not None:
                whole.append(r.target_bpp)
        if e is None or d is None:
            missing.append(r.target_bpp)
            nm = r.not_measured.get("gpu" if device == "cuda" else device)
            reasons.add(nm.reason if nm else f"no {device} timing in the report")
            absent.append(nm is not None and nm.code in (NotMeasuredCode.NO_DEVICE, NotMeasuredCode.NOT_REQUESTED))
        else:
            enc.append(e)
            dec.append(d)
    limit = f"encode and decode time on {device} for every rate point"
    measured = (f"encode {min(enc):.4g}–{max(enc):.4g} s, decode {min(dec):.4g}–{max(dec):.4g} s "
                f"(median per image) over {len(enc)} rate point(s)") if enc else ""
    if whole:
        measured += " (whole-process times of the programs at " + ", ".join(f"{t:g}" for t in whole) + " bpp)"
    if missing:
        # Missing because the machine has no such device: not measured. Otherwise the run failed to time it.
        if all(absent):
            return Finding(None, measured, limit, reason="; ".join(sorted(reasons)))
        return Finding(False, measured, limit, f"make encode/decode complete on {device} at "
                       + ", ".join(f"{t:g}" for t in missing) + " bpp (" + "; ".join(sorted(reasons)) + ")")
    return Finding(True, measured, limit)


@check("params_reported")
def check_params_reported(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Parameters of the largest model and the total over rate points reported (optionally ≤ limit)."""
    s = derive.summary(report)
    largest, total = s.params_largest_model, s.params_total
    max_params = rule.get("limit")
    limit = "reported" + (f", largest model ≤ {int(max_params):,}" if max_params is not None else "")
    if largest is None or total is None:
        return Finding(None, limit=limit, reason="no rate point reported its parameters")
    measured = f"largest model {largest:,} (at {s.params_largest_model_rate:g} bpp), total {total:,}"
    if max_params is not None and largest > max_params:
        return Finding(False, measured, limit, "reduce the parameters of the largest model")
    return Finding(True, measured, limit)


@check("decoder_kmac_reported")
def check_decoder_kmac(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Worst-case decoder kMAC/px reported (optionally ≤ limit). A resolution that could not be counted, or a
    count with ops that have no formula, leaves the worst case unknown: not measured, never pass."""
    s = derive.summary(report)
    max_kmac = rule.get("limit")
    limit = "reported" + (f", ≤ {float(max_kmac):g} kMAC/px" if max_kmac is not None else "")
    at = s.kmac_px_decoder_worst_at
    if at is None:
        return Finding(None, limit=limit, reason="no decoder count in the report")
    where = f"{at.image or 'resolution'} {at.width}×{at.height} at {at.target_bpp:g} bpp".strip()
    measured = f"{at.kmac_px:.2f} kMAC/px ({where})"
    if max_kmac is not None and at.kmac_px > float(max_kmac):
        return Finding(False, measured, limit, "reduce the decoder's complexity")
    uncounted_res = [f"{res.width}×{res.height} at {r.target_bpp:g} bpp ({res.note or res.method})"
                     for r in report.ok_rates() for res in r.resolutions if res.decoder is None]
    if uncounted_res:
        return Finding(None, measured, limit, reason="the worst case is unknown: the decoder could not be counted at "
                       + _join(uncounted_res, 2))
    incomplete = sorted({op for r in report.ok_rates() for c in
                         [p.counts["decoder"] for p in r.images] + [res.decoder for res in r.resolutions if res.decoder]
                         if not c.complete for op in c.uncounted})
    if incomplete or not at.complete:
        return Finding(None, measured, limit, reason=f"a lower bound (≥ {at.kmac_px:.2f} kMAC/px): ops without a "
                       f"formula: {_join(incomplete) or 'unknown'}")
    return Finding(True, measured, limit)


@check("task_ratio")
def check_task_ratio(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Compressed-domain tasks ([[tasks]]): every task measured at every rate point, and with `limit`, the
    latent pipeline's MACs at most `limit` × the decoded anchor's (strict, every task × rate × anchor).
    The default rule is recommended and has no limit: `check` records the task figures without judging them.
    A submission without [[tasks]] passes (nothing to measure)."""
    lim = rule.get("limit")
    limit = "every task measured" + (f", latent ÷ decoded anchor ≤ {float(lim):g}" if lim is not None else "")
    if report.verification is not None:
        return Finding(None, limit=limit, reason="verify: tasks are not measured on a delivery")
    rows = derive.task_rows(report)
    if not rows:
        skipped = [r.not_measured["tasks"].reason for r in report.rates if "tasks" in r.not_measured]
        if skipped:
            return Finding(None, limit=limit, reason=skipped[0])
        return Finding(True, "no [[tasks]] in the submission", limit)
    failed = [f"{t.task} at {t.target_bpp:g} bpp" for t in rows if t.error is not None]
    if failed:
        return Finding(False, f"{len(failed)} task(s) failed", limit, "fix the task: " + _join(failed, 2))
    worst = max((t for t in rows if t.ratio is not None), key=lambda t: t.ratio, default=None)
    if worst is None:
        return Finding(None, limit=limit, reason="no ratio: the decoded anchors counted no MAC")
    measured = f"{worst.ratio:.4g} ({worst.task} vs {worst.anchor} at {worst.target_bpp:g} bpp)"
    if any(not (t.latent.complete and t.decoded.complete) for t in rows):
        return Finding(None, measured, limit, reason="a task count is incomplete (ops without a formula)")
    if lim is not None and worst.ratio > float(lim):
        return Finding(False, measured, limit, "make the latent-domain task network lighter")
    return Finding(True, measured, limit)


def _interop_rates(report: Report) -> tuple[list[RateResult], list[str]]:
    have, reasons = [], []
    for r in _ok_rates(report):
        if r.interop is not None and r.interop.images:
            have.append(r)
        else:
            nm = r.not_measured.get("interop")
            reasons.append(f"{r.target_bpp:g} bpp: {nm.reason if nm else 'not in the report'}")
    return have, reasons


def _pair_label(rates: list[RateResult]) -> str:
    pairs = sorted({r.interop.pair + (" (proxy)" if r.interop.proxy else "") for r in rates})
    return ", ".join(pairs)


@check("interop_decode")
def check_interop_decode(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Every bitstream encoded on A decodes on B, to the A picture within `limit` 8-bit code values."""
    tol = int(rule.get("limit", 1))
    rates, reasons = _interop_rates(report)
    limit = f"every bitstream decodes on B, |A − B| ≤ {tol} code value(s)"
    if not rates:
        return Finding(None, limit=limit, reason="; ".join(reasons) or "no rate point was measured")
    n, failures, differ, worst = 0, [], [], None
    for r in rates:
        for e in r.interop.images:
            if e.error_a:
                continue
            n += 1
            where = f"{e.name} at {r.target_bpp:g} bpp"
            if e.decode_error_b:
                failures.append(f"{where}: {e.decode_error_b}")
                continue
            if worst is None or e.max_abs_diff > worst[0]:
                worst = (e.max_abs_diff, e.max_abs_diff_8bit, where, e.psnr_drop_db)
            if e.max_abs_diff_8bit > tol:
                differ.append(f"{where}: PSNR {e.a['psnr_rgb']:.2f} → {e.b['psnr_rgb']:.2f} dB "
                              f"(drop {e.psnr_drop_db:.2f} dB, max diff {e.max_abs_diff_8bit})")
    pair = _pair_label(rates)
    measured = f"{n} bitstreams, pair {pair}"
    if worst is not None:
        measured += f"; largest |A − B| {worst[0]:.3g} ({worst[1]} code values, {worst[2]}, PSNR drop {worst[3]:.3g} dB)"
    details = {"pair": pair, "failures": failures, "differ": differ, "bitstreams": n}
    if failures or differ:
        msg = []
        if failures:
            msg.append(f"{len(failures)} failed to decode on B: {_join(failures, 2)}")
        if differ:
            msg.append(f"{len(differ)} decode to another picture: {_join(differ, 2)}")
        fix = ("make decoding independent of float rounding on the device: integer arithmetic for what "
               "drives the entropy decoder (probabilities, scales, context model), as in Ballé et al. 2019")
        return Finding(False, measured + "; " + "; ".join(msg), limit, fix, details=details)
    if reasons:
        return Finding(None, measured, limit, reason="; ".join(reasons), details=details)
    return Finding(True, measured, limit, details=details)


@check("interop_bdrate")
def check_interop_bdrate(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """BD-rate of the B-decoded RD curve against the A-decoded one, per image and metric: |BD| < limit %."""
    max_pct = float(rule.get("limit", 0.5))
    metrics = list(rule.get("metrics", ["psnr_rgb", "ms_ssim"]))
    rates, reasons = _interop_rates(report)
    limit = f"|BD-rate| < {max_pct:g} % ({', '.join(metrics)}, pchip)"
    if not rates:
        return Finding(None, limit=limit, reason="; ".join(reasons) or "no rate point was measured")
    names = []
    for r in rates:
        for e in r.interop.images:
            if e.name not in names:
                names.append(e.name)
    results, not_computed, worst = [], [], None
    for name in names:
        for metric in metrics:
            pts_a, pts_b, broken = [], [], None
            for r in sorted(rates, key=lambda r: r.target_bpp):
                e = next((e for e in r.interop.images if e.name == name), None)
                if e is None or e.error_a:
                    continue
                if e.decode_error_b:
                    broken = f"the {r.target_bpp:g} bpp bitstream failed to decode on B"
                    break
                a, b = (bd_value(metric, (e.a or {}).get(metric)), bd_value(metric, (e.b or {}).get(metric)))
                if a is None or b is None:
                    broken = f"{metric} not defined for {e.width}×{e.height}"
                    break
                pts_a.append((e.bpp, a))
                pts_b.append((e.bpp, b))
            if broken is None:
                bd = bd_rate([p[0] for p in pts_a], [p[1] for p in pts_a], [p[0] for p in pts_b], [p[1] for p in pts_b])
                if bd.percent is None:
                    broken = bd.reason
            if broken is not None:
                not_computed.append(f"{name}/{metric}: {broken}")
                continue
            results.append({"image": name, "metric": metric, "bd_rate_percent": bd.percent})
            if worst is None or abs(bd.percent) > abs(worst["bd_rate_percent"]):
                worst = results[-1]
    pair = _pair_label(rates)
    details = {"pair": pair, "bd_rates": results, "not_computed": not_computed}
    measured = f"pair {pair}"
    if worst is not None:
        measured += (f"; worst BD-rate {worst['bd_rate_percent']:+.3f} % ({worst['image']}, {worst['metric']}) "
                     f"over {len(results)} curve(s)")
    if worst is not None and not abs(worst["bd_rate_percent"]) < max_pct:
        bad = [x for x in results if not abs(x["bd_rate_percent"]) < max_pct]
        fix = ("the picture decoded on B costs more bits for the same quality: make the decoder's arithmetic "
               "device-independent (integer entropy-model networks)")
        return Finding(False, measured + f"; {len(bad)} curve(s) at or over the limit", limit, fix, details=details)
    if not_computed:
        if worst is None:
            return Finding(None, measured, limit, reason=_join(not_computed, 3), details=details)
        measured += f"; not computed: {_join(not_computed, 2)}"
    if worst is None:
        return Finding(None, measured, limit, reason="no curve", details=details)
    return Finding(True, measured, limit, details=details)


# -- a delivery (`jpegai-profile verify`) ------------------------------------------------------------------

# Checks about a delivery: applied only to a verification report (report.verification), skipped otherwise.
VERIFY_CHECKS = ("bitstreams_complete", "decoded_match", "encoder_match", "model_match")


def _items(report: Report):
    return [i for r in report.rates for i in r.verification]


def _no_delivery() -> Finding:
    return Finding(None, reason="not a verification run (no delivery)")


@check("bitstreams_complete")
def check_bitstreams_complete(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """A readable bitstream for every mandatory target rate × original; no unknown rate folder, no stray file."""
    v = report.verification
    if v is None:
        return _no_delivery()
    targets = [float(t) for t in rule.get("rates", cond.target_rates)]
    items = _items(report)
    limit = f"a bitstream for each of {len(v.originals_names)} original(s) × " + ", ".join(f"{t:g}" for t in targets) + " bpp"
    missing = []
    for t in targets:
        for name in v.originals_names:
            it = next((i for i in items if derive.same_rate(i.target_bpp, t) and i.original == name), None)
            if it is None:
                missing.append(f"{t:g}/{name}.bin (no rate folder)" if not any(
                    derive.same_rate(i.target_bpp, t) for i in items) else f"{t:g}/{name}.bin")
            elif not it.bitstream_present or (it.bytes == 0):
                missing.append(it.problems[0] if it.problems else f"{it.bitstream}")
    failed_rates = [f"{r.target_bpp:g} bpp ({r.error.message if r.error else 'failed'})"
                    for r in report.rates if not r.ok]
    stray = [f"{p.file}: {p.message}" for p in v.problems]
    present = sum(1 for i in items if i.bitstream_present)
    measured = f"{present} bitstream(s) found"
    if missing or stray or failed_rates:
        parts = ([f"missing {len(missing)}: {_join(missing, 3)}"] if missing else []) + \
                ([f"{len(stray)} problem(s): {_join(stray, 2)}"] if stray else []) + \
                ([f"rate points failed: {_join(failed_rates, 2)}"] if failed_rates else [])
        return Finding(False, measured + "; " + "; ".join(parts), limit,
                       "deliver BITSTREAMS/<target>/<stem>.bin for every mandatory rate and original, nothing else",
                       details={"missing": missing, "problems": stray})
    return Finding(True, measured, limit)


@check("decoded_match")
def check_decoded_match(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Each submitted bitstream decodes (the submission's decoder, CPU) to the submitted decoded picture
    within `limit` 8-bit code values (default 0: bit-exact)."""
    if report.verification is None:
        return _no_delivery()
    tol = int(rule.get("limit", 0))
    limit = "bit-exact" if tol == 0 else f"|decoded − submitted| ≤ {tol} code value(s)"
    items = [i for i in _items(report) if i.bitstream_present]
    if not items:
        return Finding(None, limit=limit, reason="no bitstream was delivered")
    bad, worst = [], None
    for i in items:
        where = f"{i.original} at {i.target_bpp:g} bpp"
        if i.decoded_max_abs_diff is None:
            bad.append(f"{where}: {i.problems[0] if i.problems else 'not compared'}")
            continue
        if worst is None or i.decoded_max_abs_diff > worst[0]:
            worst = (i.decoded_max_abs_diff, where, i.decoded_psnr_db)
        if i.decoded_max_abs_diff > tol:
            bad.append(f"{where}: largest difference {i.decoded_max_abs_diff} code values, "
                       f"PSNR {i.decoded_psnr_db:.2f} dB ({i.decoded})")
    measured = f"{len(items)} bitstream(s)"
    if worst is not None:
        measured += f"; largest difference {worst[0]} ({worst[1]})"
    if bad:
        return Finding(False, measured + f"; {len(bad)} do not match: {_join(bad, 2)}", limit,
                       "deliver the pictures the delivered decoder makes of the delivered bitstreams "
                       "(8-bit RGB, clamp(0,1)·255 rounded half to even)", details={"mismatch": bad})
    return Finding(True, measured, limit)


@check("encoder_match")
def check_encoder_match(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """Re-encoding each original gives the submitted bytes; for an encoder declared non-deterministic
    (`submission.encoder_deterministic = false`), a size within `limit` (relative, default 0.01)."""
    if report.verification is None:
        return _no_delivery()
    deterministic = report.submission.encoder_deterministic
    tol = float(rule.get("limit", 0.01))
    limit = "identical bytes" if deterministic else f"size within {tol * 100:g} % (encoder declared non-deterministic)"
    items = [i for i in _items(report) if i.bitstream_present]
    if not items:
        return Finding(None, limit=limit, reason="no bitstream was delivered")
    bad = []
    for i in items:
        where = f"{i.original} at {i.target_bpp:g} bpp"
        if i.reencoded_bytes is None:
            bad.append(f"{where}: not re-encoded ({i.problems[0] if i.problems else 'failed'})")
        elif deterministic and not i.encoder_identical:
            bad.append(f"{where}: re-encoded {i.reencoded_bytes} bytes differ from the submitted {i.bytes}")
        elif not deterministic and abs(i.reencoded_bytes - i.bytes) > tol * i.bytes:
            bad.append(f"{where}: re-encoded {i.reencoded_bytes} bytes, submitted {i.bytes}")
    measured = f"{len(items) - len(bad)} of {len(items)} re-encoded bitstream(s) match"
    if bad:
        return Finding(False, measured + f": {_join(bad, 2)}", limit,
                       "deliver the bitstreams the delivered encoder makes, or declare "
                       "submission.encoder_deterministic = false", details={"mismatch": bad})
    return Finding(True, measured, limit)


@check("model_match")
def check_model_match(report: Report, cond: TestConditions, rule: dict) -> Finding:
    """The submission's files hash as listed by --model-sha256 (binds the run to the earlier delivery)."""
    v = report.verification
    if v is None:
        return _no_delivery()
    limit = "every file as listed, none unlisted"
    if v.model is None:
        return Finding(None, limit=limit, reason="no --model-sha256 listing given")
    measured = f"{v.model.listed} file(s) listed in {v.model.file}"
    if not v.model.matched:
        return Finding(False, measured + f"; {len(v.model.problems)} differ: {_join(v.model.problems, 3)}", limit,
                       "verify the model that was delivered (the files changed since the listing)",
                       details={"problems": list(v.model.problems)})
    return Finding(True, measured, limit)


# -- the engine ------------------------------------------------------------------------------------------

def rules_of(cond: TestConditions) -> tuple[tuple[dict, ...], str]:
    """The rules to apply and where they came from: the conditions' own, else the default profile.toml's."""
    if cond.rules:
        return tuple(cond.rules), cond.source or "profile.toml"
    from .conditions import load_conditions

    return tuple(load_conditions(DEFAULT_CONFIG).rules), f"{DEFAULT_CONFIG} (the conditions name no rules)"


def validate_rules(rules: tuple[dict, ...], source: str) -> None:
    """The rules are well formed (profiler/conditions.py checks them when profile.toml is read; rules built
    in code are checked the same way here) and each names a check registered in this engine."""
    validate_conditions_rules(list(rules), source)
    for i, rule in enumerate(rules):
        if rule["check"] not in CHECKS:   # KNOWN_CHECKS and CHECKS disagree: a test keeps them equal
            raise InputError(source, f"rules[{i}].check", f"no check {rule['check']!r} is registered")


def _status(level: str, met: bool | None) -> str:
    if met is None:
        return NOT_MEASURED
    if met:
        return PASS
    return FAIL if level == "mandatory" else WARN


def assess(report: Report, cond: TestConditions) -> Verdict:
    """The verdict: `fail` when a mandatory rule fails; otherwise `pass` only when every mandatory rule
    passes *and* the run finished (an unfinished report's figures cover only what was measured)."""
    rules, source = rules_of(cond)
    validate_rules(rules, source)
    results = []
    for rule in rules:
        if rule["check"] in VERIFY_CHECKS and report.verification is None:
            continue   # a delivery's rules: only for `verify`
        level = rule.get("level", "mandatory")
        f = CHECKS[rule["check"]](report, cond, rule)
        status = _status(level, f.met)
        results.append(RuleResult(id=rule["id"], description=rule.get("description", ""), level=level,
                                  status=status, measured=f.measured if f.met is not None or not f.reason
                                  else (f.measured + "; " if f.measured else "") + f.reason,
                                  limit=f.limit, fix=f.fix if status in (FAIL, WARN) else "", details=f.details))
    mandatory = [r for r in results if r.level == "mandatory"]
    if any(r.status == FAIL for r in mandatory):
        verdict = FAIL
    elif all(r.status == PASS for r in mandatory) and derive.is_complete(report):
        verdict = PASS
    else:
        verdict = "incomplete"
    return Verdict(verdict=verdict, rules=results, rules_source=str(source))


def evaluate(report: Report, cond: TestConditions) -> Report:
    """The report with its compliance verdict."""
    return report.model_copy(update={"compliance": assess(report, cond)})

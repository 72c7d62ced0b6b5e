"""Issue 18: everything that can be validated is validated before the first worker starts.

Bad `[[rules]]`, non-finite numbers and unknown keys in profile.toml, a bad picture set and a bad `--out`
each give exit status 2 and one line naming the file and the field, with no traceback; no worker runs
(`runner.run_limited` is replaced by a tripwire and the submission's code would leave a marker), and a
report already in `--out` is left byte for byte as it was. The table runs the CLI in process
(`profiler.cli.main`), so each case takes well under a second.
"""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import profiler.runner
from profiler.conditions import KNOWN_CHECKS, load_conditions
from profiler.errors import InputError
from profiler.outdir import LOCK_NAME, prepare_out
from profiler.model.io import write_report
from profiler.submission import files_hash

from conftest import MARKER_CODEC, ROOT, VALID_MANIFEST, one_line_error, write_manifest

CODEC = MARKER_CODEC

# Without weights, so that a case costs no weights check; the codec's name is AcmeNet.
MANIFEST = VALID_MANIFEST.replace('weights = "weights/r006.safetensors"\n', "")

SENTINEL = json.dumps({"schema_version": "1.0", "submission": {"codec": "AcmeNet"}, "rates": [],
                       "note": "a good report measured earlier"}, indent=1)


def _png(path: Path, width: int, height: int, bit_depth: int = 8, colour_type: int = 2, raw: bytes = b"") -> Path:
    """A PNG written by hand: any declared size, any IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def _good_png(path: Path, w: int = 16, h: int = 8) -> Path:
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def _snapshot(folder: Path) -> dict:
    """Every file below `folder` (the lock file aside) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A valid submission, a folder with a good report in it, and a tripwire on starting a worker."""
    d = write_manifest(tmp_path / "acme", MANIFEST)
    (d / "codec.py").write_text(CODEC)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(SENTINEL)
    (out / "table.csv").write_text("rate,bpp\n0.06,0.061\n")
    workers = []

    def tripwire(*args, **kwargs):
        workers.append(args)
        raise AssertionError("a worker was started")

    monkeypatch.setattr(profiler.runner, "run_limited", tripwire)
    return {"tmp": tmp_path, "sub": d, "out": out, "workers": workers, "before": _snapshot(out)}


def _refused(capsys, env, argv, file_part, field, words):
    """main(argv) exits 2 with one line naming the file and the field; nothing ran, nothing changed."""
    t0 = time.perf_counter()
    line = one_line_error(capsys, argv, file_part, field, words)
    elapsed = time.perf_counter() - t0
    assert env["workers"] == [] and not (env["sub"] / "RAN").exists()
    assert _snapshot(env["out"]) == env["before"]
    assert elapsed < 5, f"validation took {elapsed:.1f} s"
    return line


# -- profile.toml: [[rules]], non-finite numbers, unknown keys (items 2 and 8) ---------------------------

RULE = '[[rules]]\nid = "x"\ncheck = "runtime"\n'

CONFIG_CASES = [
    ("rule-unknown-check", '[[rules]]\nid = "x"\ncheck = "rate_overshot"\n', "rules[0].check",
     "unknown check 'rate_overshot'"),
    ("rule-missing-check", '[[rules]]\nid = "x"\n', "rules[0].check", "missing"),
    ("rule-bad-level", RULE + 'level = "optional"\n', "rules[0].level", "expected mandatory or recommended"),
    ("rule-limit-nan", RULE + "limit = nan\n", "rules[0].limit", "must be a finite number, got nan"),
    ("rule-limit-inf", RULE + "limit = inf\n", "rules[0].limit", "must be a finite number, got inf"),
    ("rule-limit-negative", RULE + "limit = -1\n", "rules[0].limit", "must be zero or positive"),
    ("rule-limit-text", RULE + 'limit = "10 %"\n', "rules[0].limit", "expected a non-negative number"),
    ("rule-missing-id", '[[rules]]\ncheck = "runtime"\n', "rules[0].id", "missing"),
    ("rule-empty-id", '[[rules]]\nid = ""\ncheck = "runtime"\n', "rules[0].id", "expected a non-empty string"),
    ("rule-duplicate-id", RULE + RULE, "rules[1].id", "duplicate rule id 'x'"),
    ("rule-unknown-key", RULE + 'levle = "mandatory"\n', "rules[0].levle", "unknown key"),
    ("rule-bad-device", RULE + 'device = "tpu"\n', "rules[0].device", "expected one of cpu, cuda"),
    ("rule-rate-nan", '[[rules]]\nid = "r"\ncheck = "rate_points"\nrates = [0.5, nan]\n', "rules[0].rates[1]",
     "finite"),
    ("rules-not-tables", "rules = [1]\n", "rules[0]", "expected a table"),
    ("timeout-nan", "[worker]\ntimeout_s = nan\n", "worker.timeout_s", "must be a finite number, got nan"),
    ("timeout-inf", "[worker]\ntimeout_s = inf\n", "worker.timeout_s", "must be a finite number, got inf"),
    ("overshoot-nan", "[conditions]\nmax_rate_overshoot = nan\n", "conditions.max_rate_overshoot", "finite"),
    ("target-rate-inf", "[conditions]\ntarget_rates = [0.5, inf]\n", "conditions.target_rates[1]", "finite"),
    ("timing-unknown-key", "[timing]\nrepeets = 3\n", "timing.repeets", "unknown key"),
    ("lend-idle-not-bool", "[timing]\nlend_idle_slots = 1\n", "timing.lend_idle_slots", "expected"),
    ("worker-unknown-key", "[worker]\ntimeout = 60\n", "worker.timeout", "unknown key"),
    ("unknown-table", "[timming]\nrepeats = 3\n", "timming", "unknown key"),
    ("conditions-unknown-key", "[conditions]\nrates = [0.5]\n", "conditions.rates", "unknown key"),
    ("builtin-empty", "[images]\nbuiltin = []\n", "images.builtin", "must name at least one picture"),
    ("builtin-unknown", '[images]\nbuiltin = ["lena"]\n', "images.builtin[0]", "unknown built-in picture 'lena'"),
    ("builtin-twice", '[images]\nbuiltin = ["chelsea", "chelsea"]\n', "images.builtin[1]", "names 'chelsea' twice"),
]


@pytest.mark.parametrize("case_id,text,field,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_profile_toml_refused_before_any_worker(env, capsys, case_id, text, field, words):
    config = env["tmp"] / "profile.toml"
    config.write_text(text)
    _refused(capsys, env, [str(env["sub"]), "--config", str(config), "--out", str(env["out"]), "--device", "cpu"],
             config, field, words)


def test_known_checks_are_the_engines_checks():
    from profiler.compliance import CHECKS

    assert set(KNOWN_CHECKS) == set(CHECKS)


def test_the_shipped_profile_toml_still_loads():
    cond = load_conditions(ROOT / "profile.toml")
    assert len(cond.rules) == 15 and cond.worker.timeout_s == 1800.0   # 11 + the 4 of a delivery (verify)
    assert cond.timing.lend_idle_slots is True and cond.timing.slots_per_host == 1


def test_conditions_do_not_import_the_rules_engine():
    import ast

    tree = ast.parse((ROOT / "profiler" / "conditions.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and "compliance" in m for m in imported), imported


# -- the picture set (item 3) -----------------------------------------------------------------------------

def _pics(tmp: Path, *makers) -> Path:
    folder = tmp / "pics"
    folder.mkdir()
    for make in makers:
        make(folder)
    return folder


def _truncated(folder):
    p = _good_png(folder / "cut.png", 64, 64)
    p.write_bytes(p.read_bytes()[:60])


def _one_bit(folder):
    Image.fromarray(np.zeros((8, 8), bool)).save(folder / "mono.png")


PICTURE_CASES = [
    ("empty-folder", lambda f: None, "pics", "images", "no .png files in the directory"),
    ("zero-bytes", lambda f: (f / "zero.png").write_bytes(b""), "zero.png", None, "is empty (0 bytes)"),
    ("truncated", _truncated, "cut.png", None, "cannot decode PNG"),
    ("not-a-png", lambda f: (f / "notes.png").write_text("hello"), "notes.png", None, "not a PNG file"),
    ("jpeg-named-png", lambda f: Image.new("RGB", (8, 8)).save(f / "photo.png", format="JPEG"), "photo.png", None,
     "not a PNG file"),
    ("declared-60000", lambda f: _png(f / "huge.png", 60000, 60000), "huge.png", None, "declares 60000×60000 pixels"),
    ("declared-too-many-pixels", lambda f: _png(f / "wide.png", 16384, 8192), "wide.png", None,
     "declares 16384×8192 pixels"),
    ("symlink-out", lambda f: (f / "x.png").symlink_to("/etc/passwd"), "x.png", None,
     "is a link to /etc/passwd, outside the picture folder"),
    ("same-name", lambda f: (_good_png(f / "a.png"), _good_png(f / "a.PNG")), "a.png", None,
     "same picture name 'a' as a.PNG"),
    ("one-bit", _one_bit, "mono.png", None, "unsupported PNG mode '1'"),
    ("link-loop", lambda f: ((f / "l1.png").symlink_to(f / "l2.png"), (f / "l2.png").symlink_to(f / "l1.png")),
     "l1.png", None, "is a link"),
    ("folder-named-png", lambda f: (f / "dir.png").mkdir(), "dir.png", None, "is not a regular file"),
    ("bad-after-good", lambda f: (_good_png(f / "a.png"), (f / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")),
     "b.png", None, "PNG"),
]


@pytest.mark.parametrize("case_id,make,file_part,field,words", PICTURE_CASES, ids=[c[0] for c in PICTURE_CASES])
def test_bad_picture_set_refused_before_any_worker(env, capsys, case_id, make, file_part, field, words):
    folder = _pics(env["tmp"], make)
    _refused(capsys, env, [str(env["sub"]), "--images", str(folder), "--out", str(env["out"]), "--device", "cpu"],
             folder / file_part if file_part != "pics" else folder, field, words)


def test_bad_picture_in_profile_toml_folder(env, capsys):
    folder = _pics(env["tmp"], lambda f: (f / "zero.png").write_bytes(b""))
    config = env["tmp"] / "profile.toml"
    config.write_text(f'[images]\nsource = "{folder}"\n')
    _refused(capsys, env, [str(env["sub"]), "--config", str(config), "--out", str(env["out"])],
             folder / "zero.png", None, "is empty")


def test_good_pictures_pass_the_check_8_and_16_bit():
    import tempfile

    from profiler.conditions import ImageSpec
    from profiler.images import check_images, load_images

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _good_png(folder / "rgb.png", 20, 10)
        Image.fromarray((np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)).save(folder / "grey16.png")
        _png(folder / "rgb48.png", 4, 2, 16, 2, b"".join(b"\x00" + b"\x80\x00" * 12 for _ in range(2)))
        (folder / "link.png").symlink_to(folder / "rgb.png")    # a link inside the folder is fine
        spec = ImageSpec(source=str(folder))
        assert check_images(spec) == ["grey16", "link", "rgb", "rgb48"]
        images = {i.name: i for i in load_images(spec)}
        assert images["rgb48"].pixels.shape == (2, 4, 3) and images["rgb48"].pixels[0, 0, 0] == 128
        assert images["grey16"].pixels.dtype == np.uint8 and images["grey16"].width == 20


def test_picture_refusal_in_a_subprocess_is_one_line(tmp_path):
    d = write_manifest(tmp_path / "acme", MANIFEST)
    (d / "codec.py").write_text(CODEC)
    folder = tmp_path / "pics"
    folder.mkdir()
    _png(folder / "huge.png", 60000, 60000)
    proc = subprocess.run([sys.executable, "-m", "profiler", str(d), "--images", str(folder), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"jpegai-profile: error: {folder / 'huge.png'}: declares 60000×60000 pixels (at most 16384 per side and "
        "67,108,864 pixels in all)"]
    assert proc.stdout == "" and not (tmp_path / "out").exists() and not (d / "RAN").exists()


# -- the output folder (item 5) ---------------------------------------------------------------------------

def test_out_below_a_regular_file(env, capsys):
    (env["tmp"] / "afile").write_text("")
    _refused(capsys, env, [str(env["sub"]), "--out", str(env["tmp"] / "afile" / "out")], "command line", "--out",
             "a parent is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(env, capsys):
    ro = env["tmp"] / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, env, [str(env["sub"]), "--out", str(ro / "out")], "command line", "--out", "Permission denied")
    finally:
        ro.chmod(0o755)


def test_out_inside_the_submission(env, capsys):
    _refused(capsys, env, [str(env["sub"]), "--out", str(env["sub"] / "reports")], "command line", "--out",
             "inside the submission directory")
    assert not (env["sub"] / "reports").exists()


def test_default_out_when_run_from_inside_the_submission(env, capsys, monkeypatch):
    monkeypatch.chdir(env["sub"])
    _refused(capsys, env, ["."], "command line", "--out", "reports/acmenet is inside the submission directory")
    assert not (env["sub"] / "reports").exists()


def _other_codec(out: Path) -> None:
    (out / "report.json").write_text(SENTINEL.replace('"AcmeNet"', '"OtherNet"'))


def test_resume_into_another_codecs_report_is_refused(env, capsys):
    _other_codec(env["out"])
    env["before"] = _snapshot(env["out"])
    _refused(capsys, env, [str(env["sub"]), "--out", str(env["out"]), "--resume"], "command line", "--out",
             "is a report of codec 'OtherNet', not 'AcmeNet': --resume cannot continue it")


def test_default_out_holding_another_codecs_report_is_refused(env, capsys, monkeypatch):
    monkeypatch.chdir(env["tmp"])
    default = env["tmp"] / "reports" / "acmenet"   # the default folder is the codec name's slug
    default.mkdir(parents=True)
    _other_codec(default)
    env["out"], env["before"] = default, _snapshot(default)
    _refused(capsys, env, [str(env["sub"])], "command line", "--out",
             "holds a report of codec 'OtherNet', not 'AcmeNet'; name the folder with --out to replace it")


def test_a_second_profile_into_a_locked_folder_is_refused(env, capsys):
    with prepare_out(env["out"], env["sub"], "AcmeNet", explicit=True, resume=False):
        _refused(capsys, env, [str(env["sub"]), "--out", str(env["out"])], "command line", "--out",
                 f"another jpegai-profile (pid {os.getpid()}) is writing into {env['out']}")
    # Released on leaving the `with`: the folder can be taken again.
    with prepare_out(env["out"], env["sub"], "AcmeNet", explicit=True, resume=False) as lock:
        assert lock.locked


def test_a_lock_held_by_another_process_is_refused(env, tmp_path):
    code = ("import sys, time; from profiler.outdir import prepare_out\n"
            f"lock = prepare_out({str(env['out'])!r}, {str(env['sub'])!r}, 'AcmeNet', True, False)\n"
            "print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"another jpegai-profile \(pid {holder.pid}\) is writing"):
            prepare_out(env["out"], env["sub"], "AcmeNet", explicit=True, resume=False)
    finally:
        holder.kill()
        holder.wait()
    with prepare_out(env["out"], env["sub"], "AcmeNet", explicit=True, resume=False) as lock:
        assert lock.locked   # the lock died with its process


def test_explicit_out_may_replace_another_codecs_report_but_not_by_default(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _other_codec(out)
    sub = tmp_path / "sub"
    sub.mkdir()
    with prepare_out(out, sub, "AcmeNet", explicit=True, resume=False) as lock:
        assert lock.locked and (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(InputError, match="holds a report of codec 'OtherNet'"):
        prepare_out(out, sub, "AcmeNet", explicit=False, resume=False)
    with prepare_out(tmp_path / "new" / "deep", sub, "AcmeNet", explicit=False, resume=True) as lock:
        assert (tmp_path / "new" / "deep").is_dir()   # a new folder is created


# -- the submission's fingerprint (items 5 and 11) -------------------------------------------------------

def _old_hash(directory: Path) -> str:
    """files_hash as it was (whole files): reports already written must keep resuming."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(directory)).encode())
            h.update(b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def test_files_hash_streams_and_equals_the_old_fingerprint(tmp_path, monkeypatch):
    d = write_manifest(tmp_path / "acme", MANIFEST)
    (d / "codec.py").write_text(CODEC)
    (d / "weights").mkdir()
    (d / "weights" / "big.pt").write_bytes(os.urandom(3 << 20))
    expected = _old_hash(d)

    def whole(self):
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(Path, "read_bytes", whole)
    assert files_hash(d) == expected


def test_files_hash_ignores_an_output_folder_inside_the_submission(tmp_path):
    d = write_manifest(tmp_path / "acme", MANIFEST)
    (d / "codec.py").write_text(CODEC)
    before = files_hash(d)
    out = d / "reports" / "AcmeNet"
    out.mkdir(parents=True)
    (out / LOCK_NAME).write_text("123\n")
    (out / "report.json").write_text(SENTINEL)
    assert files_hash(d) == before
    (d / "codec.py").write_text(CODEC + "\n# changed\n")
    assert files_hash(d) != before


def test_a_lock_file_at_the_submission_root_hides_nothing(tmp_path):
    d = write_manifest(tmp_path / "acme", MANIFEST)
    (d / "codec.py").write_text(CODEC)
    (d / LOCK_NAME).write_text("1\n")
    before = files_hash(d)
    (d / "codec.py").write_text(CODEC + "\n# changed\n")
    assert files_hash(d) != before


# -- minor ones (item 11) ---------------------------------------------------------------------------------

def test_report_json_is_0644(tmp_path):
    path = tmp_path / "report.json"
    from conftest import minimal_report

    write_report(minimal_report(), path)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_plot_without_data_warns_nothing():
    from profiler.render import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.lines({"AcmeNet": [(0.5, None)]}, "bpp", "dB", "nothing measured").startswith("data:image/svg")
        assert plots.scatter({"AcmeNet": [(None, 1.0)]}, "x", "y", "nothing").startswith("data:image/svg")
        assert plots.grouped_bars(["a"], {"enc": [None]}, "s", "nothing").startswith("data:image/svg")


SLEEPER = """
import time

def build(rate, device):
    time.sleep(600)
"""


def test_sigterm_during_a_rate_point_removes_the_worker_temp_folder(tmp_path):
    d = write_manifest(tmp_path / "sleeper", MANIFEST.replace('codec = "AcmeNet"', 'codec = "Sleeper"'))
    (d / "codec.py").write_text(SLEEPER)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "profiler", str(d), "--out", str(tmp_path / "out"), "--quick",
                             "--device", "cpu"], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp.glob("jpegai-worker-*")) and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp.glob("jpegai-worker-*")), "no worker started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert list(tmp.glob("jpegai-worker-*")) == [] and "Traceback" not in err


def test_relative_picture_folder_is_relative_to_profile_toml(tmp_path, monkeypatch):
    """The worker runs in a temporary folder: a relative images.source is read against the config's folder,
    so the check before measuring and the worker look at the same pictures."""
    (tmp_path / "conf" / "pics").mkdir(parents=True)
    _good_png(tmp_path / "conf" / "pics" / "a.png")
    config = tmp_path / "conf" / "profile.toml"
    config.write_text('[images]\nsource = "pics"\n')
    monkeypatch.chdir(tmp_path)
    cond = load_conditions(config)
    assert cond.images.source == str((tmp_path / "conf" / "pics").resolve())
    from profiler.images import check_images

    assert check_images(cond.images, cond.source) == ["a"]

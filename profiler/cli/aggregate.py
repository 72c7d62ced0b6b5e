"""`jpegai-profile aggregate REPORTS_DIR... [--out DIR] [--complete-only]`.

Reads every report.json below the folders into one cross-proponent table (profiler/aggregation.py),
writes aggregate.csv, aggregate.md and aggregate.html, and prints the summary rows. A malformed report,
or one of a schema this version cannot read, is one line naming the file (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from .common import EXIT_OK, ArgParser, console

NAME = "aggregate"
ALIASES = ()

SHOWN = ["proponent", "codec", "params_largest_model", "params_total", "kmac_px_decoder_worst",
         "kmac_px_encoder_max", "median_dec_cpu_s", "verdict"]


def parser() -> ArgParser:
    p = ArgParser(prog="jpegai-profile aggregate",
                  description="One cross-proponent table from every report.json below the given folders.")
    p.add_argument("dirs", nargs="+", type=Path, help="folders searched for report.json (or report files)")
    p.add_argument("--out", type=Path, default=Path("reports") / "aggregate",
                   help="output folder (default: reports/aggregate/)")
    p.add_argument("--complete-only", action="store_true",
                   help="leave out reports of runs that did not finish (run.state running, rate points missing)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    from rich.table import Table

    from ..aggregation import aggregate, display_frame, summary_cell, write_outputs
    from ..render.escape import markup

    df = aggregate(args.dirs, complete_only=args.complete_only)
    written = write_outputs(df, args.out)
    out = console()
    t = Table(title="JPEG AI complexity — all proponents")
    for c in SHOWN:
        t.add_column(c)
    for _, r in display_frame(df[df["row"] == "summary"]).iterrows():
        t.add_row(*[markup(summary_cell(r, c)) for c in SHOWN])
    out.print(t)
    perf = df.attrs.get("performance") or []
    if any(r["avg_bd"] for r in perf):
        from ..performance import flat, fmt

        cols, rows = flat(perf)
        p = Table(title="Complexity–performance (one row per proponent × decoder)")
        for c in cols:
            p.add_column(c)
        for r in rows:
            p.add_row(*[markup(fmt(r[c], c)) for c in cols])
        out.print(p)
    for path, w in (df.attrs.get("warnings") or {}).items():
        out.print(f"[yellow]warning[/yellow] {markup(path)}: {markup(w)}", highlight=False)
    for path, w in (df.attrs.get("left_out") or {}).items():
        out.print(f"[yellow]left out[/yellow] {markup(path)}: {markup(w)}", highlight=False)
    out.print("wrote " + markup(", ".join(str(p) for p in written)), highlight=False)
    return EXIT_OK

"""jpegai-profile: complexity and profiling suite for learned image codecs submitted to JPEG AI."""

from .version import SCHEMA_VERSION, __version__



def load_report(path):
    """One report.json → its standard table as a pandas DataFrame (see profiler.aggregation.load_report)."""
    from .aggregation import load_report as _load

    return _load(path)


def aggregate(paths, complete_only: bool = False):
    """Reports (files, or folders searched for report.json) → one cross-proponent pandas DataFrame;
    `complete_only` leaves out reports of runs that did not finish."""
    from .aggregation import aggregate as _aggregate

    return _aggregate(paths, complete_only=complete_only)


__all__ = ["__version__", "SCHEMA_VERSION", "load_report", "aggregate"]

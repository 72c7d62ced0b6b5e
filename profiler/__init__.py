"""jpegai-profile: complexity and profiling suite for learned image codecs submitted to JPEG AI."""

__version__ = "0.1.0"

# Version of the report.json schema. Bump the minor for added fields, the major for changes that
# break readers (renamed or removed fields, changed units).
SCHEMA_VERSION = "1.1"



def load_report(path):
    """One report.json → its standard table as a pandas DataFrame (see profiler.aggregation.load_report)."""
    from .aggregation import load_report as _load

    return _load(path)


def aggregate(paths):
    """Reports (files, or folders searched for report.json) → one cross-proponent pandas DataFrame."""
    from .aggregation import aggregate as _aggregate

    return _aggregate(paths)


__all__ = ["__version__", "SCHEMA_VERSION", "load_report", "aggregate"]

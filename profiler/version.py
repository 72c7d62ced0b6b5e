"""The suite's version and the report schema's (MAJOR.MINOR: a minor adds optional fields; a major renames,
removes or changes a unit, and readers of another major refuse the report, 1.x excepted: it is upgraded)."""

__version__ = "0.1.0"
SCHEMA_VERSION = "2.0"

"""jpegai-profile: complexity and profiling suite for learned image codecs submitted to JPEG AI."""

__version__ = "0.1.0"

# Version of the report.json schema. Bump the minor for added fields, the major for changes that
# break readers (renamed or removed fields, changed units).
SCHEMA_VERSION = "1.0"

__all__ = ["__version__", "SCHEMA_VERSION"]

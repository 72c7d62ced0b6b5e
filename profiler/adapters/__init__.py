"""Adapters that turn other libraries' models into Codecs (see profiler.codec.Codec)."""

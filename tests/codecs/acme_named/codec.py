"""The tiny codec (tests/codecs/tiny/codec.py) under a free-text name: only the manifest differs."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tiny_codec", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

build = _tiny.build

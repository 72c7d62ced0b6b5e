"""Entry of a compliance fixture: the rate-controlled codec of ../ratectl, with this manifest's options."""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "ratectl", pathlib.Path(__file__).resolve().parent.parent / "ratectl" / "ratectl.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
build = _module.build

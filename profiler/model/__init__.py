"""The typed data that crosses rooms: the report (report.py), its file (io.py) and 1.x upgrader."""

from .report import *  # noqa: F401,F403

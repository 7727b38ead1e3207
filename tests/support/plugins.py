"""A strategy plugin that never returns, installed into a folder put on `sys.path`.

importlib.metadata finds a plugin by the `*.dist-info` folder next to its module,
so a test needs no package build: it writes both and puts the folder on
`sys.path` (or `PYTHONPATH`, for servers and spawned children).
"""

from __future__ import annotations

from pathlib import Path

from oppscan.strategies import ENTRY_POINT_GROUP

HANG = "hang"

_MODULE = '''
import threading


class Hang:
    """Waits for ever, as a strategy stuck on a data fetch that never answers."""

    name = "hang"
    description = "never returns"

    def run(self, ctx):
        threading.Event().wait()
        return []
'''


def install_hang_plugin(folder: Path) -> Path:
    """Write the `hang` plugin into `folder` and return it, for `sys.path` or `PYTHONPATH`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "oppscan_test_hang.py").write_text(_MODULE)
    info = folder / "oppscan_test_hang-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: oppscan-test-hang\nVersion: 0\n")
    entry_point = f"[{ENTRY_POINT_GROUP}]\n{HANG} = oppscan_test_hang:Hang\n"
    (info / "entry_points.txt").write_text(entry_point)
    return folder

"""The README's Python quick start runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_quick_start_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python block"
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the snippet writes run1.zarr and expert.zarr in the current folder
    try:
        namespace: dict = {}
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["actions"].num_rows == 100
    assert namespace["ex"]["frames"].segments().tolist() == [[0, 120]]

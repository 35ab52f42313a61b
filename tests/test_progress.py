"""The one progress-line printer shared by retargeting and the LeRobot converters."""

from __future__ import annotations

import pytest

from mimicdata.progress import progress_printer


def test_prints_a_bar_per_step_and_passes_callbacks_through(capsys: pytest.CaptureFixture[str]) -> None:
    show = progress_printer(True, 2, "episodes")
    show("a")
    show("b")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"[{'#' * 12}{'-' * 12}] 1/2 episodes a", f"[{'#' * 24}] 2/2 episodes b"]
    progress_printer(False, 2)("quiet")
    assert capsys.readouterr().err == ""
    seen: list[str] = []
    progress_printer(seen.append, 2)("x")
    assert seen == ["x"]
    progress_printer(True, 1)("clip 0 ok")
    assert capsys.readouterr().err == f"[{'#' * 24}] 1/1 clip 0 ok\n"  # no label: retargeting's format

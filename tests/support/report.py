"""Measured-number reporting shared by the runtime tests: lines written to the terminal at the end of
each test module (pytest's terminal reporter), so parity numbers show up in ordinary runs."""

from __future__ import annotations

import pytest


def reporter_fixture(title: str):
    lines: list[str] = []

    @pytest.fixture(scope="module", autouse=True)
    def _report(request):
        yield lines
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        cap = request.config.pluginmanager.get_plugin("capturemanager")
        if tr is not None and lines:
            with cap.global_and_fixture_disabled():
                tr.write_line("")
                tr.section(title, sep="-")
                for ln in lines:
                    tr.write_line(ln)

    return _report, lines

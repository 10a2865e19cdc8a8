"""Root conftest: the `--solution` option, which must exist before pytest parses the
command line (options in tests/conftest.py are unknown to a bare `pytest --solution ...`)."""
from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--solution", choices=("exercises", "reference"), default=None,
        help="whose code the tests run: the learner's exercises/ (default) or reference/ "
        "(same as KATA_SOLUTION=...)",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--solution")
    if chosen:
        os.environ["KATA_SOLUTION"] = chosen

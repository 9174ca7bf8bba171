"""Test-wide setup: 8 forced CPU devices (for sharding tests) and quiet JAX logs."""

import os

# Must happen before JAX initialises its backends (conftest is imported first).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO

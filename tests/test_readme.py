"""The README's python blocks run as written (on a small arch and a short schedule)."""

import re

import numpy as np
import pytest

# Only size and length change: each pair must occur in the README exactly once, so a
# README edit that drops one fails here instead of silently running the full-size job.
SHRINK = [
    ("blocks=6, channels=256", "blocks=2, channels=8"),
    ("patch_size=48, batch_size=16, seed=0)", "patch_size=16, batch_size=2, seed=0)"),
    ("arch=arch, data=train)", "arch=arch, data=train, config=dict(pace_steps=30, hyper_embed=4))"),
    ("bundled_patches(arch.scale, 48, 16, seed=1), steps=10_000", "bundled_patches(arch.scale, 16, 2, seed=1), steps=3"),
    ("data=train, steps=2000)", "data=train, steps=400, config=dict(pace_steps=30, hyper_embed=4))"),
]


def python_blocks(readme: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", readme, flags=re.S)


def notebook_block_promises(namespace, tmp_path):
  """The "From a notebook" block: a pruned model within budget, one SR image of twice the size."""
  result, lr_image, sr = namespace["result"], namespace["lr_image"], namespace["sr"]
  assert result.report["params_ratio"] <= 0.085 + 1e-9 and result.report["converged"]
  h, w = lr_image.shape[:2]
  assert lr_image.shape == (h, w, 3)
  # A single (H, W, 3) image in, a single (2H, 2W, 3) float image out (no batch axis).
  assert sr.shape == (2 * h, 2 * w, 3) and sr.dtype == np.float32
  assert (tmp_path / "model.msgpack").exists()


def family_block_promises(namespace, tmp_path):
  """The family block: three members, each landed at or under its keep (at most 3 points
  under), taken in order on the way down one search, each a smaller model."""
  family = namespace["family"]
  assert [m.report["budget"]["keep"] for m in family] == [0.5, 0.3, 0.15]
  steps = [m.report["steps"] for m in family]
  assert steps == sorted(steps) and len(set(steps)) == 3
  for member, keep in zip(family, (0.5, 0.3, 0.15)):
    assert member.report["converged"]
    assert keep - 0.03 - 1e-9 <= member.report["flops_ratio"] <= keep + 1e-9
  params = [m.report["params"] for m in family]
  assert params[0] > params[1] > params[2]


def export_block_promises(namespace, tmp_path):
  """The export block: it loaded what the notebook block saved and upscaled a (1, H, W, 3) batch."""
  import jax

  import fmp_jax
  lr, sr = namespace["lr"], namespace["sr"]
  assert lr.shape[0] == 1 and lr.ndim == 4
  assert sr.shape == (1, 2 * lr.shape[1], 2 * lr.shape[2], 3)
  saved = fmp_jax.load(str(tmp_path / "model.msgpack"))
  assert saved.arch == namespace["result"].arch
  jax.tree.map(np.testing.assert_array_equal, saved.params, namespace["tuned"])


# One checker per ```python block, in README order, each run right after its block (a later
# block may rebind the names an earlier one set, e.g. `sr`).
PROMISES = [notebook_block_promises, family_block_promises, export_block_promises]


@pytest.mark.slow
def test_readme_python_blocks_run(repo_root, tmp_path, monkeypatch):
  readme = (repo_root / "README.md").read_text()
  for old, _ in SHRINK:
    assert readme.count(old) == 1, f"README no longer holds {old!r} exactly once"
  blocks = python_blocks(readme)
  assert len(blocks) == len(PROMISES), (
      f"README has {len(blocks)} python blocks, this test checks {len(PROMISES)}: give each its checks")
  monkeypatch.chdir(tmp_path)   # the notebook block writes model.msgpack, the export block reads it
  namespace = {}
  for block, promises in zip(blocks, PROMISES):
    for old, new in SHRINK:
      block = block.replace(old, new)
    exec(compile(block, "README.md", "exec"), namespace)   # noqa: S102
    promises(namespace, tmp_path)


@pytest.mark.parametrize("command", [
    "pip install -e . && python -m fmp_jax.main --config=configs/demo.py --workdir=/tmp/fmp_demo",
    "pip install -e '.[test]' && python -m pytest -q",
])
def test_readme_set_up_commands_are_the_documented_two(repo_root, command):
  # .ci/run runs the second verbatim; both are checked as written by users.
  readme = (repo_root / "README.md").read_text()
  assert f"```bash\n{command}\n```" in readme

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
]


def python_blocks(readme: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", readme, flags=re.S)


def test_readme_python_blocks_run(repo_root, tmp_path, monkeypatch):
  readme = (repo_root / "README.md").read_text()
  for old, _ in SHRINK:
    assert readme.count(old) == 1, f"README no longer holds {old!r} exactly once"
  blocks = python_blocks(readme)
  assert len(blocks) >= 2
  monkeypatch.chdir(tmp_path)   # the notebook block writes model.msgpack, the export block reads it
  namespace = {}
  for block in blocks:
    for old, new in SHRINK:
      block = block.replace(old, new)
    exec(compile(block, "README.md", "exec"), namespace)   # noqa: S102

  # What the blocks promise: a pruned model within budget, an SR image of twice the size.
  import fmp_jax
  result, lr_image = namespace["result"], namespace["lr_image"]
  assert result.report["params_ratio"] <= 0.085 + 1e-9 and result.report["converged"]
  assert namespace["sr"].shape == (1, 2 * lr_image.shape[0], 2 * lr_image.shape[1], 3)
  # The export block loaded what the notebook block saved.
  saved = fmp_jax.load(str(tmp_path / "model.msgpack"))
  assert saved.arch == result.arch
  import jax
  jax.tree.map(np.testing.assert_array_equal, saved.params, namespace["tuned"])


@pytest.mark.parametrize("command", [
    "pip install -e . && python -m fmp_jax.main --config=configs/demo.py --workdir=/tmp/fmp_demo",
    "pip install -e '.[test]' && python -m pytest -q",
])
def test_readme_set_up_commands_are_the_documented_two(repo_root, command):
  # .ci/run runs the second verbatim; both are checked as written by users.
  readme = (repo_root / "README.md").read_text()
  assert f"```bash\n{command}\n```" in readme

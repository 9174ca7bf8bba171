"""The params/FLOPs counter against the paper's numbers, closed forms and Flax itself."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fmp_jax.arch import Arch
from fmp_jax.models import abstract_params
from fmp_jax.pruning import complexity

# (model, blocks, channels, scale) -> (params, FLOPs) from FMP.md section 2.
PAPER = {
    ("esrb", 6, 256, 2): (8_180_876, 1_877_752_502_784),
    ("esrb", 6, 256, 3): (8_215_451, 836_783_447_040),
    ("esrb", 6, 256, 4): (8_263_856, 474_212_676_096),
    ("edsr", 8, 128, 2): (3_106_307, 717_432_422_400),
    ("edsr", 8, 128, 3): (3_844_227, 395_506_851_840),
    ("edsr", 8, 128, 4): (3_696_643, 317_642_342_400),
}


@pytest.mark.parametrize("key", sorted(PAPER))
def test_counts_reproduce_the_paper(key):
  model, blocks, channels, scale = key
  counts = complexity.count(Arch(model=model, blocks=blocks, channels=channels, scale=scale))
  params, flops = PAPER[key]
  assert counts.params == params
  # The spec gives FLOPs to 4-5 significant decimals in G; the exact integers
  # above were checked against those roundings (e.g. 1,877.7525G at x2).
  assert counts.flops == flops


@pytest.mark.parametrize("scale, rounded", [(2, "1877.75"), (3, "836.78"), (4, "474.21")])
def test_esrb_flops_round_like_the_paper(scale, rounded):
  counts = complexity.count(Arch(scale=scale))
  assert f"{counts.flops / 1e9:.2f}" == rounded


@pytest.mark.parametrize("h, w, s", [(360, 640, 2), (17, 23, 3), (48, 48, 4), (101, 64, 2)])
def test_esrb_closed_form(h, w, s):
  """FMP.md's closed form for ESRB-6-256 at any LR size."""
  h2, w2 = (h - 3) // 2 + 1, (w - 3) // 2 + 1
  h3, w3 = (h2 - 7) // 3 + 1, (w2 - 7) // 3 + 1
  expected_macs = h * w * (8_118_528 + 6_912 * s * s) + 13_824 * (h2 * w2 + h3 * w3)
  counts = complexity.count(Arch(scale=s), lr_hw=(h, w))
  assert counts.flops == expected_macs
  assert counts.params == 8_153_216 + 6_915 * s * s


@pytest.mark.parametrize("arch", [
    Arch(), Arch(scale=3), Arch(scale=4),
    Arch(model="edsr", blocks=8, channels=128, scale=2),
    Arch(model="edsr", blocks=8, channels=128, scale=4),
    Arch(blocks=2, channels=16, esa_channels=8, widths={"stream": 5, "block_1.inner": 2}),
    Arch(blocks=2, channels=16, esa_channels=8, prune_esa=True,
         widths={"block_0.esa": 3, "stream": 11}),
    Arch(model="edsr", blocks=3, channels=12, scale=3, widths={"stream": 7, "block_2.inner": 1}),
], ids=str)
def test_counter_agrees_with_flax_params(arch):
  assert complexity.count(arch).params == complexity.param_count(abstract_params(arch))


def test_layer_table_matches_param_tree():
  arch = Arch(blocks=2, channels=8, scale=2)
  params = abstract_params(arch)
  for layer in complexity.layer_table(arch, (24, 24)):
    node = params
    for part in layer.path:
      node = node[part]
    assert node["kernel"].shape == layer.kernel


def test_masked_count_by_hand():
  """A single-block EDSR at 16x16 LR, x2, with one channel and one weight removed."""
  arch = Arch(model="edsr", blocks=1, channels=4, scale=2)
  lr_hw = (16, 16)
  dense = complexity.count(arch, lr_hw=lr_hw)
  # Removing inner channel 0 of block 0 drops conv_a's filter (9*4 weights + 1
  # bias) at 16x16 and conv_b's input slice (9*4 weights) at 16x16.
  masks = {"block_0.inner": np.array([0, 1, 1, 1])}
  one_channel = complexity.count(arch, channel_masks=masks, lr_hw=lr_hw)
  assert dense.params - one_channel.params == 36 + 1 + 36
  assert dense.flops - one_channel.flops == (36 + 36) * 256
  # One more weight of the tail conv (runs at HR 32x32).
  w = np.ones((3, 3, 4, 3))
  w[1, 1, 2, 0] = 0
  both = complexity.count(arch, channel_masks=masks, weight_masks={"tail": w}, lr_hw=lr_hw)
  assert one_channel.params - both.params == 1
  assert one_channel.flops - both.flops == 32 * 32


def test_channel_and_weight_mask_on_the_same_layer_by_hand():
  """EDSR-1-4 x2 at 8x8 LR; block_0's inner channels 0 and 3 dropped, and weight masks on
  both layers that touch them, with zeros inside and outside the dropped channels."""
  arch = Arch(model="edsr", blocks=1, channels=4, scale=2)
  lr_hw = (8, 8)
  inner = {"block_0.inner": np.array([0, 1, 1, 0])}        # 2 of 4 kept
  conv_b = np.ones((3, 3, 4, 4))                            # reads block_0.inner
  conv_b[0, 0, 0, 1] = conv_b[1, 2, 0, 3] = conv_b[2, 2, 0, 0] = 0   # dropped input 0
  conv_b[1, 1, 3, 2] = conv_b[0, 2, 3, 1] = 0                         # dropped input 3
  conv_b[0, 0, 1, 0] = conv_b[2, 2, 2, 3] = conv_b[1, 1, 1, 1] = 0   # kept inputs 1, 2
  conv_a = np.ones((3, 3, 4, 4))                            # writes block_0.inner
  conv_a[0, 0, 0, 3] = conv_a[1, 1, 2, 0] = 0                         # dropped outputs 3, 0
  conv_a[2, 1, 1, 2] = 0                                              # kept output 2
  got = complexity.count(arch, channel_masks=inner,
                         weight_masks={"block_0/conv_a": conv_a, "block_0/conv_b": conv_b},
                         lr_hw=lr_hw)

  lr, hr = 8 * 8, 16 * 16
  # (kept weights, kept biases, output pixels) per conv, in execution order.
  layers = [
      (9 * 3 * 4, 4, lr),            # head 3 -> stream 4
      (9 * 4 * 2 - 1, 2, lr),        # conv_a: 2 kept filters over 4 inputs, 1 zero among them
      (9 * 2 * 4 - 3, 4, lr),        # conv_b: 2 kept inputs to 4 outputs, 3 zeros among them
      (9 * 4 * 4, 4, lr),            # body_end
      (9 * 4 * 16, 16, lr),          # upsample_0: stream -> 4*4 sub-pixel channels
      (9 * 4 * 3, 3, hr),            # tail, at HR
  ]
  params = sum(w + b for w, b, _ in layers)
  flops = sum(w * pix for w, _, pix in layers)
  assert (params, flops) == (1109, 89_600)   # the sums above, written out
  assert (got.params, got.flops) == (params, flops)
  # Per layer too: the two masked layers are where a double count would show.
  rows = complexity.per_layer(arch, channel_masks=inner,
                              weight_masks={"block_0/conv_a": conv_a, "block_0/conv_b": conv_b},
                              lr_hw=lr_hw)
  assert [(r["params"], r["flops"]) for r in rows] == [(w + b, w * pix) for w, b, pix in layers]


def test_masks_and_widths_agree():
  """Keeping k channels by mask counts the same as building width k."""
  full = Arch(blocks=2, channels=12, esa_channels=4)
  keep = {"stream": 7, "block_0.inner": 3, "block_1.inner": 12}
  masks = {g: np.r_[np.ones(k), np.zeros(12 - k)] for g, k in keep.items()}
  assert complexity.count(full, channel_masks=masks) == complexity.count(full.with_widths(keep))


def test_nested_and_flat_weight_masks_agree():
  arch = Arch(blocks=1, channels=4, esa_channels=4)
  w = np.ones((3, 3, 4, 4))
  w[0, 0, 0, 0] = 0
  flat = complexity.count(arch, weight_masks={"block_0/conv_a": w})
  nested = complexity.count(arch, weight_masks={"block_0": {"conv_a": {"weight": w}}})
  assert flat == nested and flat.params == complexity.count(arch).params - 1


def run_count(repo_root, *args):
  return subprocess.run([sys.executable, str(repo_root / "tools" / "count.py"), *args],
                        capture_output=True, text=True, cwd=repo_root, timeout=120)


@pytest.mark.parametrize("config, key", [
    ("x2", ("esrb", 6, 256, 2)), ("x3", ("esrb", 6, 256, 3)), ("x4", ("esrb", 6, 256, 4)),
    ("edsr_x4", ("edsr", 8, 128, 4))])
def test_count_tool_json(repo_root, config, key):
  out = run_count(repo_root, "--config", f"configs/{config}.py", "--json")
  assert out.returncode == 0, out.stderr
  result = json.loads(out.stdout)
  assert (result["params"], result["flops"]) == PAPER[key]
  assert isinstance(result["params"], int) and isinstance(result["flops"], int)


def test_count_tool_table(repo_root):
  out = run_count(repo_root, "--config", "configs/x2.py")
  assert out.returncode == 0, out.stderr
  assert "block_5/esa/down" in out.stdout and "8,180,876 params" in out.stdout


@pytest.mark.parametrize("args, needle", [
    (["--config", "configs/x2.py", "--config.model.scale=5"], "scale=5"),
    (["--config", "configs/x2.py", "--config.model.name=vdsr"], "vdsr"),
    (["--config", "configs/x2.py", "--config.model.channels=-8"], "channels=-8"),
    (["--config", "configs/x2.py", "--config.model.chanels=8"], "chanels"),
    (["--config", "configs/no_such.py"], "no_such.py"),
])
def test_count_tool_bad_input_is_one_clear_line(repo_root, args, needle):
  out = run_count(repo_root, *args)
  assert out.returncode != 0
  assert "Traceback" not in out.stderr
  assert needle in out.stderr


def edsr_closed_form(s, stream, inner, lr_hw):
  """EDSR params/MACs by hand with the upsampler pruned with the stream (its convs
  write r*r copies of each kept stream channel)."""
  h, w = lr_hw
  pix = h * w
  params = 9 * 3 * stream + stream                                   # head
  macs = 9 * 3 * stream * pix
  for i in inner:                                                    # conv_a, conv_b
    params += 9 * stream * i + i + 9 * i * stream + stream
    macs += 2 * 9 * stream * i * pix
  params += 9 * stream * stream + stream                             # body_end
  macs += 9 * stream * stream * pix
  res = pix
  for r in {2: (2,), 3: (3,), 4: (2, 2)}[s]:                          # upsampler convs
    params += 9 * stream * r * r * stream + r * r * stream
    macs += 9 * stream * r * r * stream * res
    res *= r * r
  params += 9 * stream * 3 + 3                                       # tail, at HR
  macs += 9 * stream * 3 * res
  return params, macs


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_upsampler_pruned_with_the_stream_closed_form(scale):
  dense = Arch(model="edsr", blocks=8, channels=128, scale=scale, prune_upsampler=True)
  # Dense: the paper-convention counts are unchanged by the option.
  assert (complexity.count(dense).params, complexity.count(dense).flops) == \
      PAPER[("edsr", 8, 128, scale)]
  inner = [128, 100, 77, 64, 128, 5, 33, 90]
  pruned = dense.with_widths({"stream": 57, **{f"block_{i}.inner": c for i, c in enumerate(inner)}})
  lr_hw = complexity.lr_size_for(scale)
  counts = complexity.count(pruned)
  assert (counts.params, counts.flops) == edsr_closed_form(scale, 57, inner, lr_hw)
  assert counts.params == complexity.param_count(abstract_params(pruned))
  # Masking the same channels at full width counts the same.
  stream = np.zeros(128, np.int64)
  stream[::2][:57] = 1
  masked = complexity.count(dense, channel_masks={"stream": stream, **{
      f"block_{i}.inner": np.r_[np.ones(c), np.zeros(128 - c)] for i, c in enumerate(inner)}})
  assert masked == counts


def test_tied_upsampler_groups():
  arch = Arch(model="edsr", blocks=1, channels=8, scale=4, prune_upsampler=True,
              widths={"stream": 3})
  assert arch.prunable_groups() == ["stream", "block_0.inner"]
  assert arch.width("upsample_0") == 12 and arch.width("upsample_1.shuffled") == 3
  assert complexity.count(arch.dense()).params == complexity.count(
      Arch(model="edsr", blocks=1, channels=8, scale=4)).params
  expanded = arch.expand_tied({"stream": np.array([1, 0, 1])})
  np.testing.assert_array_equal(expanded["upsample_0"], [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(expanded["upsample_1.shuffled"], [1, 0, 1])
  # Without the option the upsampler keeps its full width.
  plain = Arch(model="edsr", blocks=1, channels=8, scale=4, widths={"stream": 3})
  assert plain.width("upsample_0") == 32

"""Arch: validation, groups, serialisation."""

import pytest

from fmp_jax.arch import Arch, ArchError


def test_round_trip_through_dict():
  arch = Arch(model="esrb", blocks=2, channels=16, scale=3, esa_channels=8,
              widths={"stream": 10, "block_1.inner": 3})
  again = Arch.from_dict(arch.to_dict())
  assert again == arch
  assert again.width("stream") == 10 and again.width("block_0.inner") == 16
  assert again.width("block_1.inner") == 3


@pytest.mark.parametrize("kwargs, field", [
    (dict(model="vdsr"), "model"),
    (dict(scale=5), "scale"),
    (dict(channels=-4), "channels"),
    (dict(blocks=0), "blocks"),
    (dict(widths={"stream": -1}), "stream"),
    (dict(widths={"stream": 0}), "stream"),
    (dict(channels=8, widths={"stream": 9}), "stream"),
    (dict(widths={"strem": 4}), "strem"),
    (dict(widths={"upsample": 4}), "upsample"),
])
def test_bad_arch_names_the_field(kwargs, field):
  with pytest.raises(ArchError, match=field):
    Arch(**kwargs)


def test_unknown_dict_field_is_named():
  with pytest.raises(ArchError, match="chanels"):
    Arch.from_dict({"model": "esrb", "chanels": 8})


def test_widths_are_read_only():
  arch = Arch(widths={"stream": 4})
  with pytest.raises(TypeError):
    arch.widths["stream"] = 5


def test_groups():
  esrb = Arch(blocks=2, channels=8, scale=2)
  assert esrb.prunable_groups() == ["stream", "block_0.inner", "block_1.inner"]
  assert esrb.groups()["upsample"].size == 12
  assert "block_0.esa" in Arch(blocks=2, prune_esa=True).prunable_groups()
  edsr = Arch(model="edsr", blocks=1, channels=8, scale=4)
  assert edsr.groups()["upsample_1"].size == 32 and not edsr.groups()["upsample_1"].prunable


def test_prune_upsampler_is_for_edsr():
  with pytest.raises(ArchError, match="prune_upsampler"):
    Arch(model="esrb", prune_upsampler=True)
  arch = Arch(model="edsr", blocks=2, channels=8, prune_upsampler=True, widths={"stream": 4})
  assert Arch.from_dict(arch.to_dict()) == arch

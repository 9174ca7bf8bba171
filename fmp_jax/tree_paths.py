"""Reading and writing nested dicts by a path tuple (layer paths like ("block_0", "conv_a"))."""

from typing import Any, Mapping, Sequence


def get_at(tree: Mapping, path: Sequence[str]) -> Any:
  """tree[path[0]][path[1]]..."""
  for part in path:
    tree = tree[part]
  return tree


def set_at(tree: dict, path: Sequence[str], value: Any) -> None:
  """Sets tree[path[0]]...[path[-1]] = value, creating intermediate dicts."""
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = value

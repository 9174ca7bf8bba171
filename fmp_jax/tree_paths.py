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


def pop_at(tree: dict, path: Sequence[str]) -> Any:
  """Removes and returns the value at `path`, then drops the dicts this leaves empty."""
  parents = [tree]
  for part in path[:-1]:
    parents.append(parents[-1][part])
  value = parents[-1].pop(path[-1])
  for parent, part in zip(reversed(parents[:-1]), reversed(path[:-1])):
    if parent[part]:
      break
    del parent[part]
  return value

"""The one exception type of the data pipeline."""


class DataError(ValueError):
  """Unusable data: the message names the file, folder or batch and the fix."""

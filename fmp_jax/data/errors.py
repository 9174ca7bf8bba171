"""The one exception type of the data pipeline."""


class DataError(ValueError):
  """Unusable data: the message names the file or folder and the fix."""

"""Errors that cnnviz raises for people, not for debuggers.

Every message says what was wrong and what to do about it, so the CLI can print
it as one line and the app can show it in an ``st.error`` box.
"""


class CnnvizError(Exception):
    """Base class of every error cnnviz raises on purpose."""


class ImageError(CnnvizError, ValueError):
    """An image file could not be read or is not acceptable."""


class DatasetError(CnnvizError, ValueError):
    """A dataset source could not be loaded."""


class ModelFileError(CnnvizError, ValueError):
    """A model file could not be loaded or saved."""


class ConfigError(CnnvizError, ValueError):
    """A configuration value is out of range or of the wrong kind."""

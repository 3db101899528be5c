"""Models: distillers, query-group detectors, layers, matchers and losses."""

from . import detectors, distillers, layers, losses, task_modules  # noqa: F401

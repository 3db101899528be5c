"""Models: distillers and their components, query-group detectors, layers, matchers, losses."""

from . import components, detectors, distillers, layers, losses, task_modules  # noqa: F401

"""Models: distillers and their components, query-group detectors and heads, layers, matchers,
losses."""

from . import components, dense_heads, detectors, distillers, layers, losses, task_modules  # noqa: F401

"""An `evaluate` module folder (see eval/metrics/__init__.py); the metric is the script of the same name."""

"""The tool's version, in a leaf module so that anything (a target, the pipeline) can read it
without importing the package face."""

__version__ = "0.1.0"

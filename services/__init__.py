"""Runnable processes around the pipeline: configuration, CLI, API, lifecycle, metrics."""

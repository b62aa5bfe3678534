"""Metrics: JS divergence for the toys (images and text metrics live beside it)."""
from .js import histogram_js, js_divergence

__all__ = ["histogram_js", "js_divergence"]

"""rss-monitor: watch news feeds and alert when an article matches your rules."""

__version__ = "0.1.0"

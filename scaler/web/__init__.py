"""The HTTP surface: webhooks, health, metrics and the JSON API."""

from scaler.web.app import create_app

__all__ = ["create_app"]

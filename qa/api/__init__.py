"""The HTTP service: ``qa.api.app.create_app(settings)``."""

"""The thin HTTP layer: FastAPI routes that validate, call a service and shape the response."""

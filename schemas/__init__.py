"""JSON Schemas shipped as package data (this file makes the folder importable for importlib.resources)."""

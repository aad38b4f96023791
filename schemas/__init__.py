"""JSON Schemas shipped as package data.

This file makes the folder a package, so importlib.resources can find the schemas.
"""

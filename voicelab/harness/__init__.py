"""Placing one call: the one door into the SDK, connection and hosted REST helpers, the Call core,
callers and the runner registry. Imports spec and audio.
"""

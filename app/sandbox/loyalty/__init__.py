"""Emulators of the loyalty platforms served by the shipped definitions (app/definitions/shipped).

Each answers its platform's documented example for a known customer and its documented error
bodies, and takes the same `/__sandbox/` fault knobs as the other emulators.
"""

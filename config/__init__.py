"""Typed settings and bot package loading."""

"""Reusable building blocks shared by the architectures (one implementation of each).

Each block lives in a module of this package; re-export it here so models import from
`lesion_lightning.layers`.
"""

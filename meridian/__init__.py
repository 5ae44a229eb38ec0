"""Meridian: a multi-region game server (see README.md and docs/architecture.md).

The repository keeps one folder per layer (games, crdt_models, sync, node, sim); this package
gathers them under one import namespace, ``meridian.<layer>``, so an installation adds exactly
one top-level package. In the checkout the layers are symbolic links to those folders.
"""

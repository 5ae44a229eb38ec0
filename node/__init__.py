"""Meridian node: the aiohttp process, its HTTP and websocket APIs, config and CLI."""

"""Pure game rules. No I/O, no asyncio; stdlib only."""

"""Device drivers: pure parsing and chip logic on top of :mod:`hardware.port`, no asyncio."""

"""`factpatch trace` (causal tracing) — registered here once factpatch.trace exists."""


def register(commands) -> None:
    return None

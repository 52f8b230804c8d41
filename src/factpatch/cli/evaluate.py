"""`factpatch eval` and `factpatch compare` — registered here once factpatch.evaluate exists."""


def register(commands) -> None:
    return None

"""sluice's exception types (a module of its own so the C++ core can raise them)."""


class ConfigError(ValueError):
    """A configuration was rejected; nothing changed.

    ``str(error)`` names the object and field, e.g. ``VirtualService reviews:
    http[1].route[0].weight: must be >= 0``; the parts are in ``object``,
    ``field`` and ``message``.
    """

    def __init__(self, text: str, object: str = "", field: str = "", message: str = ""):
        super().__init__(text)
        self.object = object
        self.field = field
        self.message = message or text

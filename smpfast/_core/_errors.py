"""The one error type raised by both twins of the core, so callers catch one class."""


class FramingError(ValueError):
    """A block, batch or padded buffer that does not follow the SMP layout."""


class CryptoError(ValueError):
    """A box that fails to authenticate, or a key or nonce of the wrong size."""

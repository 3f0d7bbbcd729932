class MediaError(ValueError):
    """A media file that cannot be used, with the file and the reason in the message."""

    def __init__(self, path: object, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class WindowOutside(MediaError):
    """An utterance window that lies beyond the end of its recording (the rest of the sample may still be used)."""

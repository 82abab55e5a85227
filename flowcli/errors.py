"""Typed errors: the library raises these, only the CLI turns them into one-line messages."""


class FlowcliError(Exception):
    """Base class: every expected failure of flowcli derives from it.

    Messages name Python parameters as `name=value` (e.g. "max_side=32: ..."); the CLI shows them as
    its flags ("--max-side 32: ..."), so each reader sees the names they can act on.
    """


class FlowFormatError(FlowcliError):
    """A .flo file (or flow array) is malformed."""


class ImageError(FlowcliError):
    """An image cannot be read, has the wrong shape, or pairs do not match."""


class CheckpointError(FlowcliError):
    """A weights/checkpoint file is missing, unreadable or does not match the architecture."""


class DataError(FlowcliError):
    """A dataset folder is empty, incomplete, or inconsistent with the requested options."""


class DeviceError(FlowcliError):
    """The requested device or dtype is not available here."""


class OutOfMemoryError(DeviceError):
    """An input does not fit in the device's memory at the requested size and batch."""

    @classmethod
    def for_input(cls, height: int, width: int, batch: int, *, where: str = "memory",
                  detail: str = "") -> "OutOfMemoryError":
        smaller = "smaller frames or a smaller batch" if batch > 1 else "smaller frames"
        return cls(f"input {height}x{width} does not fit in {where} at batch {batch}{detail}; try {smaller}")


class TrainingError(FlowcliError):
    """Training cannot go on (e.g. the loss became NaN)."""


class OutputError(FlowcliError):
    """An output path cannot be written (missing or read-only folder, or a file not to overwrite)."""

"""The training core's errors, in a leaf module: every ml module may raise them without importing another."""


class ModelArtifactError(RuntimeError):
    """An artifact that cannot be used: damaged, not what its manifest says, or for another feature set."""


class UnknownModelType(ValueError):
    """A name that is neither a model type of the catalogue nor a former name of one."""

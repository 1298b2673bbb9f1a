"""The errors every part of ``hotreload.git`` raises, in one place so that the
parts (objects, history, transport, the facade) need not import each other."""

from __future__ import annotations


class GitError(Exception):
    """A repository operation failed."""


class NotABareRepository(GitError):
    pass


class TransportError(GitError):
    """The remote could not be reached or answered with an error (transient)."""


class NetworkTimeout(TransportError):
    """The remote did not answer within ``CFP_DATA_NETWORK_TIMEOUT_SECONDS`` (transient)."""


class PushOutcomeUnknown(TransportError):
    """A push failed after its pack was sent: the remote may have moved its ref or not."""


class PushRejected(GitError):
    """The remote refused the update because it is not a fast-forward (terminal)."""


class BranchMoved(GitError):
    """The local branch is no longer at the commit a plan or a write was prepared against."""

"""How maildiag starts notebook kernels: with CurveZMQ-encrypted sockets where they can be.

jupyter_client provisions CurveZMQ keys only when asked (``KernelManager.transport_encryption``
is ``"disabled"`` by default), and ipykernel 7.x warns on every start of a kernel without them
that it "is running over TCP without encryption". Asked for ``"auto"``, the kernel manager gives
keys to any kernel whose spec declares curve support (ipykernel's does) and starts the others as
before, so the warning goes away at its cause instead of being hidden.

:func:`kernel_config` is what maildiag's own papermill runs pass; :class:`EncryptedEngine`,
registered as papermill's engine ``maildiag``, gives the same to ``papermill --engine maildiag``.
"""

from __future__ import annotations

from typing import Any

from traitlets.config import Config


def kernel_config() -> Config:
    """The kernel manager's configuration: CurveZMQ keys for kernels that take them.

    Empty where this jupyter_client cannot provision keys (too old, or pyzmq without curve),
    so that nothing breaks and kernels start as they did.
    """
    import zmq
    from jupyter_client.manager import KernelManager

    config = Config()
    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption"):
        config.KernelManager.transport_encryption = "auto"
    return config


class EncryptedEngine:
    """papermill's nbclient engine, with :func:`kernel_config` unless a config is given.

    It delegates instead of subclassing: papermill imports its engines' modules while its own
    module is still being imported, so this one must not import papermill until it is used.
    """

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str | None, **kwargs: Any) -> Any:
        from papermill.engines import NBClientEngine

        kwargs.setdefault("config", kernel_config())
        return NBClientEngine.execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> Any:
        from papermill.engines import NBClientEngine

        return NBClientEngine.nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> Any:
        from papermill.engines import NBClientEngine

        return NBClientEngine.nb_language(nb, language)

"""gridbus: message-driven integration between the power-grid enterprise systems, on RabbitMQ.

The package's parts live in the repository's top-level folders and are imported from here:
``gridbus.contracts`` (messages, schemas, errors, decision state), ``gridbus.mappings``,
``gridbus.routes``, ``gridbus.adapters``, ``gridbus.workers`` (the runtime) and
``gridbus.tools`` (the operator commands). The README's "Layout" section says what may import what.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gridbus")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

"""The operator's commands: the ``gridbus`` CLI, dead-letter operations, simulate, demo, users.

Tools stand on the runtime (``gridbus.workers``) and everything below it; nothing imports them.
"""

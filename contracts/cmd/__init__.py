"""Contracts of the service command center (cmd): its SOAP operations and messages."""

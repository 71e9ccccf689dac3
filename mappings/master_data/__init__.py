"""Master-data changes of the two middle platforms (flow 10): the rules decided on the store's
state (``rules``), and what the routes send: the reply to the platform, the message to the data
middle platform and the canonical event (``outputs``)."""

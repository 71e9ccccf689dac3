"""The dead-letter console: a web application on one port for operators (``gridbus console``)."""

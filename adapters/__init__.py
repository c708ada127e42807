"""Optional integrations of the ``voice`` engine with outside services (telephony, ...)."""

"""The project's own exception types: errors a user can cause, each naming the place."""


class VlabError(Exception):
    """Base of every error a user can cause; the CLI prints it in one line and exits 2."""


class ConfigError(VlabError):
    """A switch, port group or port was configured in a way the switch cannot build."""

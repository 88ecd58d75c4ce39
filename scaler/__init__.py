"""runner-scaler: ephemeral self-hosted CI runners for Gitea, Forgejo and GitHub."""

__version__ = "0.1.0"

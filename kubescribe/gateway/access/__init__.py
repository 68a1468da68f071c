"""Who may call the gateway: API keys and Kubernetes tokens, and how often."""

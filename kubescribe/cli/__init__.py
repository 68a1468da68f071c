"""`kubescribe`: transcribe audio through the gateway, follow and manage jobs, and manage API keys.

The gateway's URL and API key come from `--gateway` and `--api-key`, or from `KUBESCRIBE_GATEWAY_URL` and
`KUBESCRIBE_API_KEY`. Only the standard library talks to the gateway (`client`); `render` turns job views into
text; `commands` holds the parser and the commands. `keys` uses the kubernetes client with the user's kubeconfig.
"""

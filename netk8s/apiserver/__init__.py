"""The Kubernetes REST API over the store: routes, patch types, watch, Tables, OpenAPI."""

"""Deployment: the nginx template, the local cluster runner (``python -m deploy.cluster``)."""

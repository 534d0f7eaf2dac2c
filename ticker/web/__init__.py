"""The edge: the WebSocket consumer, the HTTP views and the handshake checks. They find the
process's services in the ASGI scope (``ticker.web.services``) and talk to the hub."""

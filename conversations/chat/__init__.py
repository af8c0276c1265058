"""The chat socket (`/ws/chat/`): the consumer, its frames (protocol) and its route."""

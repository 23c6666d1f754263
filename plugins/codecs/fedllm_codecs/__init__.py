"""fedllm message codecs: what travels between server and clients, smaller."""

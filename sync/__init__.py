"""Node-to-node sync: frame codec, sans-IO peer engine, durable store, transport, discovery."""

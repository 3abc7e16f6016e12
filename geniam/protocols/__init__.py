"""Wire formats and transports: XML-RPC server and client, Perspective Broker."""

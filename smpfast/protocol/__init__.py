"""Sans-IO SMP protocol: encodings, versions, commands, handshake, addresses."""

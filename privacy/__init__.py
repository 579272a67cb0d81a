"""Personal data protection: per-lead encryption of Temporal payloads and the keys behind it."""

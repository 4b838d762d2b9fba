"""Outputs: the MQTT link with its durable spool, and Home Assistant discovery."""

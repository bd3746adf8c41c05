"""Alert lifecycle and routing to the operations centre and property managers."""

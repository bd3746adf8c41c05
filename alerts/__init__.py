"""Alert lifecycle, routing to the operations centre and property managers, safety score."""

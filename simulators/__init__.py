"""Device models for every sensor family, estate registry, fault injection with labels."""

"""Detection rules, one module per sensor family."""

"""Tools around the product and stand-ins for the outside world: the ``jiayuan`` command,
the demo, chaos runs, the detection evaluation, the local servers manager, registry
generation and the reference operations centre.  They may import anything; nothing in the
product or the foundation imports them."""

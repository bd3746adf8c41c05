"""httpx responses freed when the caller drops them, not at the next full collection.

httpx (0.28, 0.29) binds each response's stream to the response, to set ``elapsed`` when
the stream closes (encode/httpx#3733): the two refer to each other, and through them the
request and its body stay alive until the cyclic collector finds them.  A gateway holds
millions of long-lived objects, so its full collections are rare, and the bodies of its
InfluxDB writes piled up in the meantime (bench/throughput.py --memory-devices).
"""

from __future__ import annotations

import httpx

# Read already: a released response's bytes are in ``response.content``.
_READ = httpx.ByteStream(b"")


def released(response: httpx.Response) -> httpx.Response:
    """``response`` without the cycle through its stream, once it has been read and closed
    (as ``Client.request`` leaves it); a response still streaming is left as it is."""
    if response.is_closed:
        response.stream = _READ
    return response

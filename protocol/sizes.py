"""Exact wire size of a message without encoding it (no array packing, no checksum).

The simulator counts the bytes every message would take on the wire. Encoding a Fuse message to
count it packs the summary (an ``m(m+3)/2`` copy) and runs crc32 over ~41 KB at m = 100; here
the size follows from the header fields and the array shapes alone::

    size = 9 (frame 0) + len(msgpack header) + 8 * (values in the array frames)

The header is the codec's header (same keys, same order, same values, array descriptors with the
same shapes), packed by msgpack (a few hundred bytes at most), so the count equals
``sum(len(frame) for frame in codec.encode(msg, encoding_hash, m))`` exactly;
``tests/protocol/test_sizes.py`` checks that for every message kind and several m.
"""

from __future__ import annotations

import msgpack

from swarmgp.protocol.codec import array_shapes, header_fields

__all__ = ["FRAME0_BYTES", "array_shapes", "encoded_size", "header_fields"]

#: Frame 0: signature, major version byte, crc32.
FRAME0_BYTES = 9


def encoded_size(msg: object, encoding_hash: str = "", m: int = 0) -> int:
    """Bytes of ``protocol.codec.encode(msg, encoding_hash, m)`` over all frames, exactly.

    Parameters
    ----------
    msg : Message
    encoding_hash : str
        The sender's common-encoding hash (written in the header).
    m : int
        The sender's number of inducing inputs (written in the header).

    Returns
    -------
    int

    Raises
    ------
    TypeError
        ``msg`` is not a protocol message.
    """
    hdr = header_fields(msg, encoding_hash, m)
    values = 0
    for _, _, shape in hdr["a"]:
        n = 1
        for s in shape:
            n *= s
        values += n
    return FRAME0_BYTES + len(msgpack.packb(hdr, use_bin_type=True)) + 8 * values

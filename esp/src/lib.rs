//! ESP (RFC 4303) dataplane, sans-IO: security associations, in-place encapsulation and
//! decapsulation, anti-replay, NAT-T framing, SAD and SPD.

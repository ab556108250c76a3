//! Authentication: PSK (RFC 7296 2.15), X.509 certificates and signatures (RFC 7427), identities.

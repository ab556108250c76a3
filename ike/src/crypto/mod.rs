//! IKE cryptography: transforms, prf+, SKEYSEED and key derivation (RFC 7296 2.13-2.18), Diffie-Hellman, the SK payload cipher.

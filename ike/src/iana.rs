//! IANA registry numbers used by IKEv2 (RFC 7296 section 3 and the IKEv2 parameters
//! registry), kept in one place so wire, crypto and the state machine agree.

/// Exchange types (RFC 7296 3.1).
pub mod exchange {
    /// IKE_SA_INIT.
    pub const IKE_SA_INIT: u8 = 34;
    /// IKE_AUTH.
    pub const IKE_AUTH: u8 = 35;
    /// CREATE_CHILD_SA.
    pub const CREATE_CHILD_SA: u8 = 36;
    /// INFORMATIONAL.
    pub const INFORMATIONAL: u8 = 37;
    /// IKE_SESSION_RESUME (RFC 5723), unsupported.
    pub const IKE_SESSION_RESUME: u8 = 38;
    /// ME_CONNECT (draft-brunner-ikev2-mediation; strongSwan private use).
    pub const ME_CONNECT: u8 = 240;
}

/// Payload types (RFC 7296 3.2, RFC 7383 2.5).
pub mod payload {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification - Initiator.
    pub const IDI: u8 = 35;
    /// Identification - Responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate Request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR_ID: u8 = 43;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// Extensible Authentication.
    pub const EAP: u8 = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Transform types (RFC 7296 3.3.2).
pub mod transform {
    /// Encryption algorithm.
    pub const ENCR: u8 = 1;
    /// Pseudorandom function.
    pub const PRF: u8 = 2;
    /// Integrity algorithm.
    pub const INTEG: u8 = 3;
    /// Key exchange method (Diffie-Hellman group).
    pub const DH: u8 = 4;
    /// Extended sequence numbers.
    pub const ESN: u8 = 5;
}

/// Encryption transform IDs.
pub mod encr {
    /// AES-CBC (RFC 3602), key length attribute required.
    pub const AES_CBC: u16 = 12;
    /// AES-GCM with a 16-octet ICV (RFC 4106, RFC 5282).
    pub const AES_GCM_16: u16 = 20;
    /// ChaCha20-Poly1305 (RFC 7634).
    pub const CHACHA20_POLY1305: u16 = 28;
}

/// Pseudorandom function transform IDs.
pub mod prf {
    /// PRF_AES128_XCBC (RFC 4434).
    pub const AES128_XCBC: u16 = 4;
    /// PRF_HMAC_SHA2_256 (RFC 4868).
    pub const HMAC_SHA2_256: u16 = 5;
    /// PRF_HMAC_SHA2_384.
    pub const HMAC_SHA2_384: u16 = 6;
    /// PRF_HMAC_SHA2_512.
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Integrity transform IDs.
pub mod integ {
    /// NONE (with AEAD ciphers).
    pub const NONE: u16 = 0;
    /// AUTH_AES_XCBC_96 (RFC 3566).
    pub const AES_XCBC_96: u16 = 5;
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    pub const HMAC_SHA2_256_128: u16 = 12;
    /// AUTH_HMAC_SHA2_384_192.
    pub const HMAC_SHA2_384_192: u16 = 13;
    /// AUTH_HMAC_SHA2_512_256.
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Key exchange method (Diffie-Hellman group) numbers.
pub mod dh {
    /// NONE (no PFS in a CREATE_CHILD_SA proposal).
    pub const NONE: u16 = 0;
    /// 256-bit random ECP group (RFC 5903).
    pub const ECP_256: u16 = 19;
    /// Curve25519 (RFC 8031).
    pub const CURVE25519: u16 = 31;
}

/// ESN transform IDs.
pub mod esn {
    /// No extended sequence numbers.
    pub const NO: u16 = 0;
    /// Extended sequence numbers.
    pub const YES: u16 = 1;
}

/// Transform attribute types (RFC 7296 3.3.5).
pub mod attr {
    /// Key Length in bits (TV format).
    pub const KEY_LENGTH: u16 = 14;
}

/// Protocol IDs in proposals, notifies and deletes (RFC 7296 3.3.1).
pub mod protocol {
    /// IKE.
    pub const IKE: u8 = 1;
    /// AH.
    pub const AH: u8 = 2;
    /// ESP.
    pub const ESP: u8 = 3;
}

/// Identification types (RFC 7296 3.5).
pub mod id {
    /// IPv4 address.
    pub const IPV4_ADDR: u8 = 1;
    /// Fully qualified domain name.
    pub const FQDN: u8 = 2;
    /// RFC 822 email address.
    pub const RFC822_ADDR: u8 = 3;
    /// IPv6 address.
    pub const IPV6_ADDR: u8 = 5;
    /// DER-encoded ASN.1 X.500 Distinguished Name.
    pub const DER_ASN1_DN: u8 = 9;
    /// DER-encoded ASN.1 X.509 GeneralName.
    pub const DER_ASN1_GN: u8 = 10;
    /// Opaque key identifier.
    pub const KEY_ID: u8 = 11;
}

/// Certificate encodings (RFC 7296 3.6).
pub mod cert {
    /// X.509 certificate - signature (DER).
    pub const X509_SIGNATURE: u8 = 4;
}

/// Authentication methods (RFC 7296 3.8, RFC 7427).
pub mod auth {
    /// RSA digital signature (PKCS#1 v1.5 with SHA-1).
    pub const RSA_SIGNATURE: u8 = 1;
    /// Shared key message integrity code.
    pub const SHARED_KEY_MIC: u8 = 2;
    /// ECDSA with SHA-256 on the P-256 curve (RFC 4754).
    pub const ECDSA_SHA256_P256: u8 = 9;
    /// Digital signature (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Traffic selector types (RFC 7296 3.13.1).
pub mod ts {
    /// IPv4 address range.
    pub const IPV4_ADDR_RANGE: u8 = 7;
    /// IPv6 address range.
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// Configuration payload types and attributes (RFC 7296 3.15).
pub mod cfg {
    /// CFG_REQUEST.
    pub const REQUEST: u8 = 1;
    /// CFG_REPLY.
    pub const REPLY: u8 = 2;
    /// CFG_SET.
    pub const SET: u8 = 3;
    /// CFG_ACK.
    pub const ACK: u8 = 4;
    /// INTERNAL_IP4_ADDRESS.
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    /// INTERNAL_IP4_DNS.
    pub const INTERNAL_IP4_DNS: u16 = 3;
    /// INTERNAL_IP6_ADDRESS.
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    /// INTERNAL_IP6_DNS.
    pub const INTERNAL_IP6_DNS: u16 = 10;
}

/// Notify message types (RFC 7296 3.10.1 and later RFCs).
pub mod notify {
    /// UNSUPPORTED_CRITICAL_PAYLOAD.
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    /// INVALID_IKE_SPI.
    pub const INVALID_IKE_SPI: u16 = 4;
    /// INVALID_MAJOR_VERSION.
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    /// INVALID_SYNTAX.
    pub const INVALID_SYNTAX: u16 = 7;
    /// INVALID_MESSAGE_ID.
    pub const INVALID_MESSAGE_ID: u16 = 9;
    /// INVALID_SPI.
    pub const INVALID_SPI: u16 = 11;
    /// NO_PROPOSAL_CHOSEN.
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// INVALID_KE_PAYLOAD.
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    /// AUTHENTICATION_FAILED.
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// SINGLE_PAIR_REQUIRED.
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    /// NO_ADDITIONAL_SAS.
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    /// INTERNAL_ADDRESS_FAILURE.
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    /// FAILED_CP_REQUIRED.
    pub const FAILED_CP_REQUIRED: u16 = 37;
    /// TS_UNACCEPTABLE.
    pub const TS_UNACCEPTABLE: u16 = 38;
    /// INVALID_SELECTORS.
    pub const INVALID_SELECTORS: u16 = 39;
    /// TEMPORARY_FAILURE (RFC 7296 2.25).
    pub const TEMPORARY_FAILURE: u16 = 43;
    /// CHILD_SA_NOT_FOUND (RFC 7296 2.25).
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// First status type; types below are errors.
    pub const FIRST_STATUS: u16 = 16384;
    /// INITIAL_CONTACT.
    pub const INITIAL_CONTACT: u16 = 16384;
    /// SET_WINDOW_SIZE.
    pub const SET_WINDOW_SIZE: u16 = 16385;
    /// ADDITIONAL_TS_POSSIBLE.
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    /// IPCOMP_SUPPORTED.
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    /// NAT_DETECTION_SOURCE_IP (RFC 7296 2.23).
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    /// NAT_DETECTION_DESTINATION_IP.
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    /// COOKIE (RFC 7296 2.6).
    pub const COOKIE: u16 = 16390;
    /// USE_TRANSPORT_MODE.
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    /// HTTP_CERT_LOOKUP_SUPPORTED.
    pub const HTTP_CERT_LOOKUP_SUPPORTED: u16 = 16392;
    /// REKEY_SA.
    pub const REKEY_SA: u16 = 16393;
    /// ESP_TFC_PADDING_NOT_SUPPORTED.
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    /// NON_FIRST_FRAGMENTS_ALSO.
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    /// MOBIKE_SUPPORTED (RFC 4555).
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    /// MULTIPLE_AUTH_SUPPORTED (RFC 4739).
    pub const MULTIPLE_AUTH_SUPPORTED: u16 = 16404;
    /// EAP_ONLY_AUTHENTICATION (RFC 5998).
    pub const EAP_ONLY_AUTHENTICATION: u16 = 16417;
    /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;
}

/// Hash algorithm identifiers for SIGNATURE_HASH_ALGORITHMS (RFC 7427 4).
pub mod hash {
    /// SHA1.
    pub const SHA1: u16 = 1;
    /// SHA2-256.
    pub const SHA2_256: u16 = 2;
    /// SHA2-384.
    pub const SHA2_384: u16 = 3;
    /// SHA2-512.
    pub const SHA2_512: u16 = 4;
    /// Identity (for EdDSA).
    pub const IDENTITY: u16 = 5;
}

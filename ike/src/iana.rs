//! IANA registry numbers used by IKEv2 (RFC 7296 section 3 and the IKEv2 parameters
//! registry), kept in one place so wire, crypto and the state machine agree.

use std::fmt;

/// A registry whose numbers travel as one newtype: `$ty`, with the RFC-named constants in
/// module `$module`, and a `Debug`/`Display` that prints the name (`CREATE_CHILD_SA`, not
/// `36`) or, for a number without one, the number.
macro_rules! registry {
    (
        $(#[$doc:meta])*
        $ty:ident($repr:ty) in $module:ident {
            $($(#[$cdoc:meta])* $name:ident = $value:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $ty(pub $repr);

        $(#[$doc])*
        pub mod $module {
            use super::$ty;
            $($(#[$cdoc])* pub const $name: $ty = $ty($value);)*
        }

        impl $ty {
            /// The registry name, if the number has one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }

        impl From<$ty> for $repr {
            fn from(v: $ty) -> $repr {
                v.0
            }
        }
    };
}

registry! {
    /// Exchange types (RFC 7296 3.1).
    ExchangeType(u8) in exchange {
        /// IKE_SA_INIT.
        IKE_SA_INIT = 34,
        /// IKE_AUTH.
        IKE_AUTH = 35,
        /// CREATE_CHILD_SA.
        CREATE_CHILD_SA = 36,
        /// INFORMATIONAL.
        INFORMATIONAL = 37,
        /// IKE_SESSION_RESUME (RFC 5723), unsupported.
        IKE_SESSION_RESUME = 38,
        /// ME_CONNECT (draft-brunner-ikev2-mediation; strongSwan private use).
        ME_CONNECT = 240,
    }
}

registry! {
    /// Payload types (RFC 7296 3.2, RFC 7383 2.5).
    PayloadType(u8) in payload {
        /// No next payload.
        NONE = 0,
        /// Security Association.
        SA = 33,
        /// Key Exchange.
        KE = 34,
        /// Identification - Initiator.
        IDI = 35,
        /// Identification - Responder.
        IDR = 36,
        /// Certificate.
        CERT = 37,
        /// Certificate Request.
        CERTREQ = 38,
        /// Authentication.
        AUTH = 39,
        /// Nonce.
        NONCE = 40,
        /// Notify.
        NOTIFY = 41,
        /// Delete.
        DELETE = 42,
        /// Vendor ID.
        VENDOR_ID = 43,
        /// Traffic Selector - Initiator.
        TSI = 44,
        /// Traffic Selector - Responder.
        TSR = 45,
        /// Encrypted and Authenticated.
        SK = 46,
        /// Configuration.
        CP = 47,
        /// Extensible Authentication.
        EAP = 48,
        /// Encrypted and Authenticated Fragment (RFC 7383).
        SKF = 53,
        /// ID_PEER: the identity a mediated peer asks the mediation server for
        /// (draft-brunner-ikev2-mediation 4.4; private use, as strongSwan numbers it).
        ID_PEER = 128,
    }
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
    /// PRF_HMAC_SHA1 (RFC 2104).
    pub const HMAC_SHA1: u16 = 2;
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
    /// AUTH_HMAC_SHA1_96 (RFC 2404).
    pub const HMAC_SHA1_96: u16 = 2;
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
    /// 1024-bit MODP group (RFC 2409 6.2).
    pub const MODP_1024: u16 = 2;
    /// 2048-bit MODP group (RFC 3526 3).
    pub const MODP_2048: u16 = 14;
    /// 3072-bit MODP group (RFC 3526 4).
    pub const MODP_3072: u16 = 15;
    /// 4096-bit MODP group (RFC 3526 5).
    pub const MODP_4096: u16 = 16;
    /// 256-bit random ECP group (RFC 5903).
    pub const ECP_256: u16 = 19;
    /// 384-bit random ECP group (RFC 5903).
    pub const ECP_384: u16 = 20;
    /// 521-bit random ECP group (RFC 5903).
    pub const ECP_521: u16 = 21;
    /// 2048-bit MODP group with a 256-bit prime order subgroup (RFC 5114 2.3).
    pub const MODP_2048_256: u16 = 24;
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
    /// ECDSA with SHA-384 on the P-384 curve (RFC 4754).
    pub const ECDSA_SHA384_P384: u8 = 10;
    /// ECDSA with SHA-512 on the P-521 curve (RFC 4754).
    pub const ECDSA_SHA512_P521: u8 = 11;
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

impl NotifyType {
    /// Error types are below 16384, status types from there (RFC 7296 3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

registry! {
    /// Notify message types (RFC 7296 3.10.1 and later RFCs).
    NotifyType(u16) in notify {
        /// UNSUPPORTED_CRITICAL_PAYLOAD.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// INVALID_IKE_SPI.
        INVALID_IKE_SPI = 4,
        /// INVALID_MAJOR_VERSION.
        INVALID_MAJOR_VERSION = 5,
        /// INVALID_SYNTAX.
        INVALID_SYNTAX = 7,
        /// INVALID_MESSAGE_ID.
        INVALID_MESSAGE_ID = 9,
        /// INVALID_SPI.
        INVALID_SPI = 11,
        /// NO_PROPOSAL_CHOSEN.
        NO_PROPOSAL_CHOSEN = 14,
        /// INVALID_KE_PAYLOAD.
        INVALID_KE_PAYLOAD = 17,
        /// AUTHENTICATION_FAILED.
        AUTHENTICATION_FAILED = 24,
        /// SINGLE_PAIR_REQUIRED.
        SINGLE_PAIR_REQUIRED = 34,
        /// NO_ADDITIONAL_SAS.
        NO_ADDITIONAL_SAS = 35,
        /// INTERNAL_ADDRESS_FAILURE.
        INTERNAL_ADDRESS_FAILURE = 36,
        /// FAILED_CP_REQUIRED.
        FAILED_CP_REQUIRED = 37,
        /// TS_UNACCEPTABLE.
        TS_UNACCEPTABLE = 38,
        /// INVALID_SELECTORS.
        INVALID_SELECTORS = 39,
        /// TEMPORARY_FAILURE (RFC 7296 2.25).
        TEMPORARY_FAILURE = 43,
        /// CHILD_SA_NOT_FOUND (RFC 7296 2.25).
        CHILD_SA_NOT_FOUND = 44,
        /// ME_CONNECT_FAILED: the requested peer is not registered at the mediation
        /// server (draft-brunner-ikev2-mediation; strongSwan's private-use number).
        ME_CONNECT_FAILED = 8192,
        /// ESPRIT_RELAY_REFUSED (esprit private use): the mediation server will not
        /// relay this attempt (the other peer cannot relay, or no relay is free).
        ESPRIT_RELAY_REFUSED = 16128,
        /// INITIAL_CONTACT.
        INITIAL_CONTACT = 16384,
        /// SET_WINDOW_SIZE.
        SET_WINDOW_SIZE = 16385,
        /// ADDITIONAL_TS_POSSIBLE.
        ADDITIONAL_TS_POSSIBLE = 16386,
        /// IPCOMP_SUPPORTED.
        IPCOMP_SUPPORTED = 16387,
        /// NAT_DETECTION_SOURCE_IP (RFC 7296 2.23).
        NAT_DETECTION_SOURCE_IP = 16388,
        /// NAT_DETECTION_DESTINATION_IP.
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// COOKIE (RFC 7296 2.6).
        COOKIE = 16390,
        /// USE_TRANSPORT_MODE.
        USE_TRANSPORT_MODE = 16391,
        /// HTTP_CERT_LOOKUP_SUPPORTED.
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        /// REKEY_SA.
        REKEY_SA = 16393,
        /// ESP_TFC_PADDING_NOT_SUPPORTED.
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        /// NON_FIRST_FRAGMENTS_ALSO.
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// MOBIKE_SUPPORTED (RFC 4555).
        MOBIKE_SUPPORTED = 16396,
        /// MULTIPLE_AUTH_SUPPORTED (RFC 4739).
        MULTIPLE_AUTH_SUPPORTED = 16404,
        /// EAP_ONLY_AUTHENTICATION (RFC 5998).
        EAP_ONLY_AUTHENTICATION = 16417,
        /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
        SIGNATURE_HASH_ALGORITHMS = 16431,
        /// ME_MEDIATION: this IKE SA is a mediation connection (draft-brunner-ikev2-
        /// mediation; the ME_* numbers are strongSwan's private-use ones).
        ME_MEDIATION = 40962,
        /// ME_ENDPOINT: one address candidate of a mediated peer.
        ME_ENDPOINT = 40963,
        /// ME_CALLBACK: the server calls a peer back once the requested peer registers.
        ME_CALLBACK = 40964,
        /// ME_CONNECTID: the identifier of one mediated connection attempt.
        ME_CONNECTID = 40965,
        /// ME_CONNECTKEY: a peer's key for authenticating connectivity checks.
        ME_CONNECTKEY = 40966,
        /// ME_CONNECTAUTH: the authenticator of one connectivity check.
        ME_CONNECTAUTH = 40967,
        /// ME_RESPONSE: this ME_CONNECT answers another peer's request.
        ME_RESPONSE = 40968,
        /// ESPRIT_RELAY (esprit private use): in a mediation SA's IKE_AUTH, the peer
        /// can use a relay through the server, and the server's answer offers one.
        ESPRIT_RELAY = 53248,
        /// ESPRIT_RELAY_REQUEST (esprit private use): a peer asks its server to relay
        /// the attempt with this connect ID (the checks found no path yet).
        ESPRIT_RELAY_REQUEST = 53249,
        /// ESPRIT_RELAY_READY (esprit private use): the server's relay port and the
        /// peer's bind token for one attempt.
        ESPRIT_RELAY_READY = 53250,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_their_names() {
        assert_eq!(
            format!("{:?}", exchange::CREATE_CHILD_SA),
            "CREATE_CHILD_SA"
        );
        assert_eq!(exchange::IKE_AUTH.to_string(), "IKE_AUTH");
        assert_eq!(format!("{:?}", payload::SKF), "SKF");
        assert_eq!(format!("{:?}", notify::TS_UNACCEPTABLE), "TS_UNACCEPTABLE");
        // A number without a registry name prints the type and the number.
        assert_eq!(format!("{:?}", ExchangeType(99)), "ExchangeType(99)");
        assert_eq!(NotifyType(40000).to_string(), "NotifyType(40000)");
        assert_eq!(u16::from(notify::COOKIE), 16390);
    }

    #[test]
    fn notify_types_below_16384_are_errors() {
        // RFC 7296 3.10.1.
        assert!(notify::CHILD_SA_NOT_FOUND.is_error());
        assert!(!notify::INITIAL_CONTACT.is_error());
        assert!(NotifyType(16383).is_error());
    }
}

//! Inputs the fuzz targets (fuzz/) found, kept as regressions.

use ike::wire::Message;

/// ike_decode, 2026-12-07: an IKE_SA_INIT response whose AES-GCM transform carries an
/// unknown TV attribute (type 6) where Key Length (14) belongs. The codec skips
/// attributes other than Key Length (RFC 7296 3.3.5 defines no other), so the message
/// re-encodes 4 bytes shorter; the harness compared the header's length field too and
/// reported a mismatch. What holds: the payloads survive a re-encoding, and the
/// re-encoding is a fixed point.
#[test]
fn an_unknown_transform_attribute_is_dropped_on_re_encoding() {
    let data = include_bytes!("data/fuzz/ike_decode-unknown-transform-attribute.bin");
    let m = Message::parse(data).expect("parses");
    let bytes = m.to_bytes();
    assert_eq!(
        bytes.len(),
        data.len() - 4,
        "the unknown attribute is not written"
    );
    let again = Message::parse(&bytes).expect("our own encoding parses");
    assert_eq!(again.payloads, m.payloads);
    assert_eq!(again.header.length as usize, bytes.len());
    assert_eq!(again.to_bytes(), bytes, "a second encoding changes nothing");
}

/// ike_decode, 2026-12-07, the same skip in a message that ends in an SK payload: the
/// SK payload's offset in the message (its AAD starts at the header) moves with the
/// shorter encoding, so a re-encoding equals the input only in its payload kinds, and
/// from then on it is a fixed point.
#[test]
fn a_skipped_attribute_moves_a_following_sk_payload() {
    let data = include_bytes!("data/fuzz/ike_decode-unknown-attribute-before-sk.bin");
    let m = Message::parse(data).expect("parses");
    let bytes = m.to_bytes();
    assert!(bytes.len() < data.len());
    let again = Message::parse(&bytes).expect("our own encoding parses");
    let kinds = |m: &Message| m.payloads.iter().map(|p| p.kind()).collect::<Vec<_>>();
    assert_eq!(kinds(&again), kinds(&m));
    assert!(again.encrypted().is_some());
    assert_ne!(again.payloads, m.payloads, "the SK payload's offset moved");
    assert_eq!(Message::parse(&again.to_bytes()).as_ref(), Ok(&again));
}

/// config_parse, 2026-12-07: a DN attribute type of digits too long for an OID arc
/// (`id = "3333...3333C=CN, O=..."`) reached const-oid's parser, which multiplies the
/// arc without checking (a panic with overflow checks on, a wrong OID without). Such a
/// name is now refused as an unknown attribute, and dotted OIDs still work.
#[test]
fn a_dn_attribute_type_past_an_oid_arc_is_refused() {
    use ike::auth::Identity;
    let long = format!("{}C=CN, O=Local Cluster", "3".repeat(80));
    assert!(Identity::parse(&long).is_err());
    assert!(Identity::parse("2.5.4.99999999999=x").is_err());
    assert!(Identity::parse("4294967296=x").is_err());
    let dotted = Identity::parse("2.5.4.3=site-a").expect("a dotted OID");
    assert_eq!(dotted, Identity::parse("CN=site-a").expect("CN"));
}

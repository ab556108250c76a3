//! Integration tests of the public `esp` API: two SAs talking through a buffer.

mod cbc;
mod common;
mod esn;
mod keys;
mod lifetime;
mod natt;
mod replay;
mod roundtrip;
mod sad;
mod tamper;

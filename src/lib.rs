//! esprit as a library: the network-namespace test bench shared by `esprit demo` and the end-to-end tests.

pub mod testbed;

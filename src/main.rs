//! The esprit command-line binary.

fn main() {
    println!("esprit {}", env!("CARGO_PKG_VERSION"));
}

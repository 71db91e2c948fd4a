//! Rebuilds the server when a file of the web client is added or removed: the embedding macro
//! tracks the files it found, not the directory, so a new file would otherwise be missed.

fn main() {
    println!("cargo:rerun-if-changed=../../web/app");
}

//! Compiles `proto/tern.proto` into Rust types and their proto3-JSON serde impls, without a system `protoc`.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tern.proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // protox parses the schema in-process so that building Tern needs nothing but cargo.
    let descriptors = protox::compile(["tern.proto"], ["proto"])?;
    let descriptor_path = out.join("tern_descriptor.bin");
    fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(descriptors)?;

    // The JSON encoding follows the proto3 JSON mapping, so that browsers and scripts need no protobuf library.
    // Readers skip keys they do not know, as protobuf readers skip unknown fields: a newer peer
    // may add fields, and an older one must still understand the rest.
    let set = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .ignore_unknown_fields()
        .build(&[".tern"])?;
    Ok(())
}

//! Generates the gRPC code of `proto/` with a vendored protoc, so no system package is needed.

#[allow(unsafe_code, reason = "setting PROTOC for the code generator, before any thread exists")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("rolegate_descriptor.bin")).compile_protos(
        &["../../proto/rolegate/v1/authorizer.proto", "../../proto/rolegate/v1/inspector.proto"],
        &["../../proto", include.to_str().unwrap_or_default()],
    )?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}

//! Generates the gRPC code of `proto/machine.proto` (needs `protoc` on the PATH).

fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/machine.proto"], &["proto"])
        .unwrap_or_else(|e| {
            panic!("cannot compile proto/machine.proto (is protoc installed?): {e}")
        });
}

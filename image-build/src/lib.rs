//! Building blocks of skiff's boot artifact: the `newc` cpio writer for the initramfs, the
//! kernel-module resolver that picks which modules go in and in what order PID 1 loads them,
//! and the signed `manifest.json` that lists every artifact file with its SHA-256.

pub mod artifact;
pub mod cpio;
mod elf;
pub mod manifest;
pub mod modules;

pub use artifact::{
    BuildError, BuildOptions, BuildReport, CA_BUNDLE_PATH, HOST_CA_BUNDLE, KERNEL_METAPACKAGE,
    KernelTree, NODE_MODULES, build, build_static_binary, fetch_kernel, key_layer,
    trusted_initramfs,
};
pub use cpio::{Archive, CpioError, Meta, Node};
pub use manifest::{Manifest, ManifestEntry, ManifestError};
pub use modules::{LoadPlan, ModuleFile, ModuleTree, ModulesError};

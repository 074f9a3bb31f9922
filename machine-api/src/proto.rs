//! The code `tonic-prost-build` generates from `proto/machine.proto`.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    unused_qualifications,
    missing_docs
)]

tonic::include_proto!("skiff.machine.v1");

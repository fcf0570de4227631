//! Generated protobuf and gRPC code of `proto/rolegate/v1/authorizer.proto` (package
//! `rolegate.v1`), shared by the server, the `check --server` client and the load generator.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("rolegate.v1");

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rolegate_descriptor");

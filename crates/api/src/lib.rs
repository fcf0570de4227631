//! rolegate's gRPC API: the generated protobuf and gRPC code of
//! `proto/rolegate/v1/authorizer.proto` (package `rolegate.v1`), its one conversion to and from
//! engine types ([`convert`], with the request limits), the AuthZEN JSON binding of the same
//! requests and decisions ([`authzen`]), and a client connector ([`client`])
//! shared by the CLI, the tests and the load generator.

pub mod authzen;
pub mod client;
pub mod convert;
pub mod plan;

/// The generated code, re-exported at the crate root.
#[allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("rolegate.v1");
}
pub use generated::*;

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rolegate_descriptor");

//! The network clients: one HTTP/TLS layer ([`http`]) and the two services built on it, etcd
//! ([`etcd`], v2 keys API and v3 JSON gateway) and UFM ([`ufm`], the PKey REST API). Each client
//! owns its settings type and its error type, returns typed data, and prints nothing.

pub(crate) mod etcd;
pub(crate) mod http;
pub(crate) mod ufm;

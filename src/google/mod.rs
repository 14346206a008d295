//! Google's side: service-account OAuth (`oauth`) and the RBM REST calls (`rbm`).

pub mod oauth;
pub mod rbm;

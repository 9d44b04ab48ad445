//! `com.atproto.server`: describing the server (sessions and the account come with storage).

use pds_api::com::atproto::server::{describe_server, ComAtprotoServer};
use pds_api::runtime::syntax::Did;
use pds_api::runtime::xrpc::XrpcError;

use super::{Api, RequestContext};

impl ComAtprotoServer for Api<'_> {
    async fn describe_server(
        &self,
        _cx: &RequestContext,
        _params: describe_server::Params,
    ) -> Result<describe_server::Output, XrpcError> {
        let did = Did::new(self.config.service_did())
            .map_err(|e| XrpcError::internal_message(format!("service DID: {e}")))?;
        Ok(describe_server::Output {
            did,
            // One account per deployment, configured at deploy time: no sign-ups, no handle domains.
            available_user_domains: Vec::new(),
            invite_code_required: Some(true),
            phone_verification_required: Some(false),
            blob_upload_limit: None,
            contact: None,
            links: None,
        })
    }
}

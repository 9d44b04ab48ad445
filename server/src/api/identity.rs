//! `com.atproto.identity`: resolving the account's own handle (others' come with proxying).

use pds_api::com::atproto::identity::{resolve_handle, ComAtprotoIdentity};
use pds_api::runtime::xrpc::XrpcError;

use super::{Api, RequestContext};

impl ComAtprotoIdentity for Api<'_> {
    const SERVES_RESOLVE_HANDLE: bool = true;

    async fn resolve_handle(
        &self,
        _cx: &RequestContext,
        params: resolve_handle::Params,
    ) -> Result<resolve_handle::Output, XrpcError> {
        // Other handles were sent to the AppView before dispatch (as the reference asks it);
        // what reaches here names the account, in any case (handles are case-insensitive).
        if self.config.names_account(params.handle.as_str()) {
            Ok(resolve_handle::Output {
                did: self.config.did.clone(),
            })
        } else {
            Err(XrpcError::invalid_request("Unable to resolve handle"))
        }
    }
}

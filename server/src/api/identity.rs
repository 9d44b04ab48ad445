//! `com.atproto.identity`: the account's own handle, and its did:plc identity operations
//! (recommended credentials, tokens, signing and submitting PLC operations). Others' handles
//! come with proxying.

use std::collections::BTreeMap;

use pds_api::com::atproto::identity::{
    defs::IdentityInfo, get_recommended_did_credentials, refresh_identity,
    request_plc_operation_signature, resolve_did, resolve_handle, resolve_identity,
    sign_plc_operation, submit_plc_operation, update_handle, ComAtprotoIdentity,
};
use pds_api::dev::rustpds::identity::{get_plc_operation_token, DevRustpdsIdentity};
use pds_api::runtime::syntax::{AtIdentifier, Datetime, Did, Handle};
use pds_api::runtime::value::Value;
use pds_api::runtime::xrpc::XrpcError;

use super::{internal, Api, RequestContext};
use crate::auth::account_token::{self, PLC_OPERATION};
use crate::config::Config;
use crate::crypto::SigningKey;
use crate::net::did_doc::DidDocument;
use crate::net::identity::IdentityError;
use crate::net::plc_directory::PlcDirectory;
use crate::plc::{DocumentData, Operation, Service, PDS_SERVICE_ID, PDS_SERVICE_TYPE};

impl ComAtprotoIdentity for Api<'_> {
    const SERVES_RESOLVE_HANDLE: bool = true;
    const SERVES_GET_RECOMMENDED_DID_CREDENTIALS: bool = true;
    const SERVES_REQUEST_PLC_OPERATION_SIGNATURE: bool = true;
    const SERVES_SIGN_PLC_OPERATION: bool = true;
    const SERVES_SUBMIT_PLC_OPERATION: bool = true;
    const SERVES_UPDATE_HANDLE: bool = true;
    const SERVES_RESOLVE_DID: bool = true;
    const SERVES_RESOLVE_IDENTITY: bool = true;
    const SERVES_REFRESH_IDENTITY: bool = true;

    async fn resolve_did(
        &self,
        _cx: &RequestContext,
        params: resolve_did::Params,
    ) -> Result<resolve_did::Output, XrpcError> {
        let (doc, _) = self.did_document_of(&params.did, false).await?;
        Ok(resolve_did::Output {
            did_doc: Value::from_json(&doc).map_err(internal)?,
        })
    }

    async fn resolve_identity(
        &self,
        _cx: &RequestContext,
        params: resolve_identity::Params,
    ) -> Result<IdentityInfo, XrpcError> {
        self.identity_info(&params.identifier, false).await
    }

    async fn refresh_identity(
        &self,
        _cx: &RequestContext,
        _params: refresh_identity::Params,
        input: refresh_identity::Input,
    ) -> Result<IdentityInfo, XrpcError> {
        self.identity_info(&input.identifier, true).await
    }

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

    async fn get_recommended_did_credentials(
        &self,
        _cx: &RequestContext,
        _params: get_recommended_did_credentials::Params,
    ) -> Result<get_recommended_did_credentials::Output, XrpcError> {
        let data = recommended_data(self.config);
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(internal)
                .and_then(|v| Value::from_json(&v).map_err(internal))
        };
        Ok(get_recommended_did_credentials::Output {
            rotation_keys: Some(data.rotation_keys),
            also_known_as: Some(data.also_known_as),
            verification_methods: Some(json(serde_json::to_value(data.verification_methods))?),
            services: Some(json(serde_json::to_value(data.services))?),
        })
    }

    async fn request_plc_operation_signature(
        &self,
        _cx: &RequestContext,
        _params: request_plc_operation_signature::Params,
    ) -> Result<(), XrpcError> {
        // The reference mails the token; with no mail, the owner reads a token through
        // dev.rustpds.identity.getPlcOperationToken, which replaces this one.
        account_token::issue(self.account.sql.as_ref(), PLC_OPERATION, self.now_ms())?;
        Ok(())
    }

    async fn sign_plc_operation(
        &self,
        _cx: &RequestContext,
        _params: sign_plc_operation::Params,
        input: sign_plc_operation::Input,
    ) -> Result<sign_plc_operation::Output, XrpcError> {
        let token = input.token.as_deref().ok_or_else(|| {
            XrpcError::invalid_request("email confirmation token required to sign PLC operations")
        })?;
        let db = self.account.sql.as_ref();
        account_token::check(db, PLC_OPERATION, token, self.now_ms())?;
        let rotation_key = self.plc_rotation_key()?;
        // Each field given replaces the current one whole, as the reference's.
        let operation = self
            .sign_after_current(rotation_key, |data| {
                if let Some(keys) = input.rotation_keys {
                    data.rotation_keys = keys;
                }
                if let Some(aka) = input.also_known_as {
                    data.also_known_as = aka;
                }
                if let Some(methods) = input.verification_methods {
                    data.verification_methods = from_value(&methods, "verificationMethods")?;
                }
                if let Some(services) = input.services {
                    data.services = from_value(&services, "services")?;
                }
                Ok(())
            })
            .await?;
        // Spent only now: a failure above leaves the token for another try.
        account_token::consume(db, PLC_OPERATION, token)?;
        Ok(sign_plc_operation::Output {
            operation: Value::from_json(&operation.to_json()).map_err(internal)?,
        })
    }

    async fn submit_plc_operation(
        &self,
        _cx: &RequestContext,
        _params: submit_plc_operation::Params,
        input: submit_plc_operation::Input,
    ) -> Result<(), XrpcError> {
        let operation = Operation::from_json(&input.operation.to_json())
            .map_err(|_| XrpcError::invalid_request("Invalid operation"))?;
        self.plc_did()?;
        check_operation_names_us(self.config, &operation.data)?;
        self.submit_to_directory(&operation).await?;
        crate::identity_events::announce_identity(self.config, self.account, &self.config.handle)
    }

    async fn update_handle(
        &self,
        _cx: &RequestContext,
        _params: update_handle::Params,
        input: update_handle::Input,
    ) -> Result<(), XrpcError> {
        self.check_not_taken_down()?;
        let handle = Handle::new(input.handle.as_str().to_ascii_lowercase())
            .map_err(|e| XrpcError::declared("InvalidHandle", e.to_string()))?;
        check_handle_domain(&handle)?;
        self.check_handle_names_account(&handle).await?;
        let did = self.config.did.as_str();
        if self.config.did.method() == "plc" {
            let rotation_key = self.plc_rotation_key()?;
            let wanted = format!("at://{}", handle.as_str());
            let operation = self
                .sign_after_current(rotation_key, |data| {
                    // The first at:// name is replaced where it stands; other names stay.
                    match data
                        .also_known_as
                        .iter_mut()
                        .find(|a| a.starts_with("at://"))
                    {
                        Some(aka) => *aka = wanted.clone(),
                        None => data.also_known_as.insert(0, wanted.clone()),
                    }
                    Ok(())
                })
                .await?;
            self.submit_to_directory(&operation).await?;
        } else if !crate::lifecycle::is_own_did_web(self.config) {
            // Another host serves the document: it must already claim the handle.
            let doc = self
                .account
                .resolver(self.config)
                .refresh_did(did)
                .await
                .map_err(|e| {
                    XrpcError::upstream_failure(format!("Could not resolve {did}: {e}"))
                })?;
            if doc.handle().as_ref() != Some(&handle) {
                return Err(XrpcError::invalid_request(
                    "DID is not properly configured for handle",
                ));
            }
        }
        crate::storage::account::set_handle(self.account.sql.as_ref(), Some(handle.as_str()))?;
        self.account.forget_effective_config();
        crate::identity_events::announce_identity(self.config, self.account, &handle)
    }
}

/// This project's own identity methods (`dev.rustpds.identity`, lexicons in `lexicons/dev/`).
impl DevRustpdsIdentity for Api<'_> {
    const SERVES_GET_PLC_OPERATION_TOKEN: bool = true;

    async fn get_plc_operation_token(
        &self,
        _cx: &RequestContext,
        _params: get_plc_operation_token::Params,
        input: get_plc_operation_token::Input,
    ) -> Result<get_plc_operation_token::Output, XrpcError> {
        self.with_auth(|auth| auth.confirm_account_password(&input.password))?;
        let now_ms = self.now_ms();
        let token = account_token::issue(self.account.sql.as_ref(), PLC_OPERATION, now_ms)?;
        Ok(get_plc_operation_token::Output {
            token,
            expires_at: Datetime::from_unix_micros(
                u64::try_from(now_ms.saturating_add(account_token::LIFETIME_MS))
                    .unwrap_or(0)
                    .saturating_mul(1000),
            ),
        })
    }
}

impl Api<'_> {
    /// The account's DID document as the network sees it: for a did:web of this host, the one
    /// this PDS serves; otherwise resolved (the PLC directory for did:plc), through the cache.
    pub(crate) async fn own_did_document(&self) -> Result<serde_json::Value, XrpcError> {
        if crate::lifecycle::is_own_did_web(self.config) {
            return Ok(crate::lifecycle::did_document(self.config));
        }
        let did = self.config.did.as_str();
        let doc = self
            .account
            .resolver(self.config)
            .resolve_did(did)
            .await
            .map_err(|e| XrpcError::invalid_request(format!("Could not resolve DID: {e}")))?;
        Ok(doc.to_json())
    }

    /// A DID's document as JSON, with the handle it claims: the account's own as
    /// [`Api::own_did_document`], others' through the resolver's cache (`refresh`: fetched
    /// anew).
    async fn did_document_of(
        &self,
        did: &Did,
        refresh: bool,
    ) -> Result<(serde_json::Value, Option<Handle>), XrpcError> {
        let resolver = self.account.resolver(self.config);
        let json = if *did == self.config.did {
            if refresh {
                resolver.forget(did.as_str());
            }
            self.own_did_document().await?
        } else {
            let doc = if refresh {
                resolver.refresh_did(did.as_str()).await
            } else {
                resolver.resolve_did(did.as_str()).await
            };
            let not_found =
                || XrpcError::declared("DidNotFound", format!("DID not found: {}", did.as_str()));
            doc.map_err(|e| resolution_error(e, not_found))?.to_json()
        };
        let claimed = DidDocument::from_value(&json).ok().and_then(|d| d.handle());
        Ok((json, claimed))
    }

    /// The DID `handle` resolves to: this PDS's hostname names the account; other handles
    /// through the resolver (`refresh`: looked up anew).
    async fn did_of_handle(&self, handle: &Handle, refresh: bool) -> Result<Did, XrpcError> {
        if handle.as_str() == self.config.hostname.split(':').next().unwrap_or_default() {
            return Ok(self.config.did.clone());
        }
        let resolver = self.account.resolver(self.config);
        let did = if refresh {
            resolver.refresh_handle(handle.as_str()).await
        } else {
            resolver.resolve_handle(handle.as_str()).await
        };
        let not_found = || XrpcError::declared("HandleNotFound", "Unable to resolve handle");
        did.map_err(|e| match e {
            // A domain that does not answer does not name a DID either.
            IdentityError::Network(_) => not_found(),
            e => resolution_error(e, not_found),
        })
    }

    /// `resolveIdentity`: the DID, its document, and the handle if it resolves both ways
    /// (else `handle.invalid`), starting from either.
    async fn identity_info(
        &self,
        identifier: &AtIdentifier,
        refresh: bool,
    ) -> Result<IdentityInfo, XrpcError> {
        let (did, asked) = match (identifier.as_did(), identifier.as_handle()) {
            (Some(did), _) => (did, None),
            (None, Some(handle)) => {
                let handle = handle.to_lowercase();
                (self.did_of_handle(&handle, refresh).await?, Some(handle))
            }
            (None, None) => return Err(XrpcError::invalid_request("Invalid identifier")),
        };
        let (doc, claimed) = self.did_document_of(&did, refresh).await?;
        let verified = match (claimed, asked) {
            // Asked by handle: it resolved to the DID; the document must claim it back.
            (Some(claimed), Some(asked)) => (claimed == asked).then_some(claimed),
            // Asked by DID: the handle the document claims must resolve to it.
            (Some(claimed), None) => match self.did_of_handle(&claimed, refresh).await {
                Ok(back) if back == did => Some(claimed),
                _ => None,
            },
            (None, _) => None,
        };
        let handle = match verified {
            Some(handle) => handle,
            None => Handle::new(Handle::INVALID).map_err(internal)?,
        };
        Ok(IdentityInfo {
            did,
            did_doc: Value::from_json(&doc).map_err(internal)?,
            handle,
        })
    }

    /// What keeps the account's DID document from naming this PDS as its host, as the
    /// reference checks before activating: this PDS's endpoint, the account's signing key and,
    /// for a did:plc, this PDS's rotation key among the rotation keys. `None`: nothing.
    pub(crate) async fn did_document_problem(&self) -> Result<Option<&'static str>, XrpcError> {
        if crate::lifecycle::is_own_did_web(self.config) {
            return Ok(None);
        }
        let wanted = recommended_data(self.config);
        let (endpoint, signing_key) = if self.config.did.method() == "plc" {
            let last = self
                .directory()
                .last_operation(self.config.did.as_str())
                .await?;
            let Some(data) = last.data else {
                return Ok(Some("Did is tombstoned"));
            };
            // Without a rotation key of its own, the PDS signs no operation, and needs none
            // listed (the owner keeps the DID's keys).
            if let Some(ours) = wanted.rotation_keys.first() {
                if !data.rotation_keys.contains(ours) {
                    return Ok(Some("Server rotation key not included in PLC DID data"));
                }
            }
            (
                data.pds_endpoint().map(str::to_owned),
                data.signing_key().map(str::to_owned),
            )
        } else {
            let did = self.config.did.as_str();
            let doc = self
                .account
                .resolver(self.config)
                .refresh_did(did)
                .await
                .map_err(|_| XrpcError::invalid_request("Could not resolve DID"))?;
            (
                doc.pds_endpoint().map(str::to_owned),
                doc.signing_key().map(|k| k.to_did_key()),
            )
        };
        if endpoint.as_deref() != wanted.pds_endpoint() {
            return Ok(Some(
                "DID document atproto_pds service endpoint does not match PDS public url",
            ));
        }
        if signing_key.as_deref() != wanted.signing_key() {
            return Ok(Some(
                "DID document verification method does not match expected signing key",
            ));
        }
        Ok(None)
    }

    /// Verifies a service token the account's DID issued for `nsid` to this PDS, with the key
    /// its DID document names now (fetched again once when the signature does not verify: the
    /// key may just have changed).
    /// Returns the key that verified it.
    pub(crate) async fn verify_account_service_token(
        &self,
        token: &str,
        nsid: &str,
    ) -> Result<crate::crypto::PublicKey, XrpcError> {
        let did = self.config.did.as_str();
        let resolver = self.account.resolver(self.config);
        let service_did = self.config.service_did();
        for refresh in [false, true] {
            let doc = if refresh {
                resolver.refresh_did(did).await
            } else {
                resolver.resolve_did(did).await
            }
            .map_err(|e| XrpcError::upstream_failure(format!("Could not resolve {did}: {e}")))?;
            let key = doc.signing_key().ok_or_else(|| {
                XrpcError::unauthorized("BadJwtIss", "the issuer's DID document has no signing key")
            })?;
            let verified = crate::auth::service::verify(
                token,
                &crate::auth::service::ServiceExpectations {
                    service_did: &service_did,
                    account_did: did,
                    account_key: &key,
                    nsid,
                    now_secs: self.account.clock.now_secs(),
                },
            );
            match verified {
                Err(e) if e.error == "BadJwtSignature" && !refresh => continue,
                other => return other.map(|_| key),
            }
        }
        Err(XrpcError::unauthorized(
            "BadJwtSignature",
            "jwt signature does not match jwt issuer",
        ))
    }

    /// Whether `handle` resolves to the account: the configured (stored) handle counts as it
    /// stands; another must resolve (see [`Api::check_handle_names_account`]).
    pub(crate) async fn accept_handle(&self, handle: &Handle) -> Result<Handle, XrpcError> {
        let handle = handle.to_lowercase();
        if !handle
            .as_str()
            .eq_ignore_ascii_case(self.config.handle.as_str())
        {
            check_handle_domain(&handle)?;
            self.check_handle_names_account(&handle).await?;
        }
        Ok(handle)
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.account.clock.now_millis()).unwrap_or(i64::MAX)
    }

    /// The account's DID when it is a did:plc: PLC operations make no sense for a did:web.
    fn plc_did(&self) -> Result<&str, XrpcError> {
        let did = self.config.did.as_str();
        if self.config.did.method() == "plc" {
            Ok(did)
        } else {
            Err(XrpcError::invalid_request(format!(
                "{did} is not a did:plc: its document is served by its host, not the PLC directory"
            )))
        }
    }

    fn plc_rotation_key(&self) -> Result<&SigningKey, XrpcError> {
        self.config.plc_rotation_key.as_ref().ok_or_else(|| {
            XrpcError::invalid_request(format!(
                "this PDS has no PLC rotation key: set the secret {}",
                crate::config::vars::PLC_ROTATION_KEY
            ))
        })
    }

    fn directory(&self) -> PlcDirectory<'_> {
        PlcDirectory::new(self.account.http.as_ref(), &self.config.network.plc_url)
    }

    /// An operation after the DID's newest one, setting that one's data as `edit` changes it,
    /// signed with `rotation_key`, which must be a rotation key of the newest operation (or the
    /// directory would refuse it).
    async fn sign_after_current(
        &self,
        rotation_key: &SigningKey,
        edit: impl FnOnce(&mut DocumentData) -> Result<(), XrpcError>,
    ) -> Result<Operation, XrpcError> {
        let did = self.plc_did()?;
        let last = self.directory().last_operation(did).await?;
        let current = last
            .data
            .ok_or_else(|| XrpcError::invalid_request("Did is tombstoned"))?;
        let mut data = current.clone();
        edit(&mut data)?;
        let ours = rotation_key.public_key().to_did_key();
        if !current.rotation_keys.contains(&ours) {
            return Err(XrpcError::invalid_request(format!(
                "this PDS cannot sign for {}: its rotation key {ours} is not among the DID's \
                 rotation keys, so the PLC directory would refuse the operation",
                self.config.did.as_str()
            )));
        }
        let operation = Operation::new(data, Some(last.cid))
            .sign(rotation_key)
            .map_err(|e| XrpcError::invalid_request(e.to_string()))?;
        // Our own signature, checked as the directory will check it.
        operation.verify(&current.rotation_keys).map_err(internal)?;
        Ok(operation)
    }

    /// Sends a signed operation to the directory, then drops the cached document so the next
    /// read sees the new one.
    async fn submit_to_directory(&self, operation: &Operation) -> Result<(), XrpcError> {
        let did = self.plc_did()?;
        self.directory().submit(did, &operation.to_json()).await?;
        self.account.resolver(self.config).forget(did);
        Ok(())
    }

    /// Whether `handle` resolves to the account's DID, freshly: the hostname of this PDS (whose
    /// `/.well-known/atproto-did` names the account), else DNS (`_atproto` TXT, through the
    /// DNS-over-HTTPS resolver) or the handle's own `/.well-known/atproto-did`.
    async fn check_handle_names_account(&self, handle: &Handle) -> Result<(), XrpcError> {
        let host = self.config.hostname.split(':').next().unwrap_or_default();
        if handle.as_str() == host {
            return Ok(());
        }
        match self
            .account
            .resolver(self.config)
            .refresh_handle(handle.as_str())
            .await
        {
            Ok(did) if did == self.config.did => Ok(()),
            _ => Err(XrpcError::invalid_request(
                "External handle did not resolve to DID",
            )),
        }
    }
}

/// What this PDS needs a did:plc document to say: its rotation key, the account's signing key
/// and handle, and this PDS as the account's host.
fn recommended_data(config: &Config) -> DocumentData {
    DocumentData {
        rotation_keys: config
            .plc_rotation_key
            .iter()
            .map(|k| k.public_key().to_did_key())
            .collect(),
        verification_methods: BTreeMap::from([(
            crate::plc::SIGNING_METHOD_ID.to_owned(),
            config.signing_key.public_key().to_did_key(),
        )]),
        also_known_as: vec![format!("at://{}", config.handle.as_str())],
        services: BTreeMap::from([(
            PDS_SERVICE_ID.to_owned(),
            Service {
                kind: PDS_SERVICE_TYPE.to_owned(),
                endpoint: config.public_url(),
            },
        )]),
    }
}

/// The reference's checks before submitting an operation for an account it hosts: the
/// operation keeps this PDS's rotation key, names this PDS, the account's signing key and its
/// handle first.
fn check_operation_names_us(config: &Config, data: &DocumentData) -> Result<(), XrpcError> {
    let wanted = recommended_data(config);
    if let Some(ours) = wanted.rotation_keys.first() {
        if !data.rotation_keys.contains(ours) {
            return Err(XrpcError::invalid_request(
                "Rotation keys do not include server's rotation key",
            ));
        }
    }
    let service = data.services.get(PDS_SERVICE_ID);
    if service.map(|s| s.kind.as_str()) != Some(PDS_SERVICE_TYPE) {
        return Err(XrpcError::invalid_request(
            "Incorrect type on atproto_pds service",
        ));
    }
    if service.map(|s| s.endpoint.as_str()) != wanted.pds_endpoint() {
        return Err(XrpcError::invalid_request(
            "Incorrect endpoint on atproto_pds service",
        ));
    }
    if data.signing_key() != wanted.signing_key() {
        return Err(XrpcError::invalid_request("Incorrect signing key"));
    }
    if data.also_known_as.first() != wanted.also_known_as.first() {
        return Err(XrpcError::invalid_request(
            "Incorrect handle in alsoKnownAs",
        ));
    }
    Ok(())
}

/// A failed lookup as an XRPC error: `not_found` when the identity does not exist, 400 when it
/// can't be resolved at all, 502 when the network failed us.
fn resolution_error(e: IdentityError, not_found: impl FnOnce() -> XrpcError) -> XrpcError {
    match e {
        IdentityError::NotFound(_) => not_found(),
        IdentityError::Unsupported(why) => XrpcError::invalid_request(why),
        e => XrpcError::upstream_failure(e.to_string()),
    }
}

/// Top-level domains no handle may use (the reference's list).
const DISALLOWED_TLDS: &[&str] = &[
    ".local",
    ".arpa",
    ".invalid",
    ".localhost",
    ".internal",
    ".example",
    ".alt",
    ".onion",
];

fn check_handle_domain(handle: &Handle) -> Result<(), XrpcError> {
    if DISALLOWED_TLDS
        .iter()
        .any(|tld| handle.as_str().ends_with(tld))
    {
        return Err(XrpcError::declared(
            "InvalidHandle",
            "Handle TLD is invalid or disallowed",
        ));
    }
    Ok(())
}

/// A field of the input as the typed form an operation holds.
fn from_value<T: serde::de::DeserializeOwned>(value: &Value, field: &str) -> Result<T, XrpcError> {
    serde_json::from_value(value.to_json())
        .map_err(|e| XrpcError::invalid_request(format!("Invalid {field}: {e}")))
}

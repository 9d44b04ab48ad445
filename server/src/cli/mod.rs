//! What the `pds` command line needs to talk to a running PDS: atrium's XRPC client over
//! reqwest, signed in with the account's password; streamed transfers (repositories, blobs)
//! go over reqwest directly. Native only.

pub mod backup;
pub mod init;
pub mod migrate;
pub mod status;

use std::sync::Mutex;

use atrium_xrpc::http::{Method, Request, Response};
use atrium_xrpc::types::{AuthorizationToken, InputDataOrBytes, OutputDataOrBytes};
use atrium_xrpc::{HttpClient, XrpcClient, XrpcRequest};

/// One PDS, and the session's tokens (access, refresh) once signed in.
pub struct Pds {
    base: String,
    http: reqwest::Client,
    access: Mutex<Option<String>>,
    refresh: Mutex<Option<String>>,
}

impl Pds {
    /// A client for the PDS at `base` (`https://pds.example.com`); not signed in.
    pub fn new(base: &str) -> Result<Pds, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Pds {
            base: base.trim_end_matches('/').to_owned(),
            http,
            access: Mutex::new(None),
            refresh: Mutex::new(None),
        })
    }

    /// Signs in (`com.atproto.server.createSession`); later calls carry the session.
    pub async fn sign_in(&self, identifier: &str, password: &str) -> Result<(), String> {
        self.sign_in_with(identifier, password, None).await
    }

    /// [`Pds::sign_in`] with the code of an email second factor, for a PDS that asked for one
    /// (`AuthFactorTokenRequired`, see [`is_error`]).
    pub async fn sign_in_with(
        &self,
        identifier: &str,
        password: &str,
        auth_factor_token: Option<&str>,
    ) -> Result<(), String> {
        let mut input = serde_json::json!({ "identifier": identifier, "password": password });
        if let Some(code) = auth_factor_token {
            input["authFactorToken"] = code.into();
        }
        let session = self
            .call(
                Method::POST,
                "com.atproto.server.createSession",
                Some(input),
            )
            .await?
            .ok_or("createSession answered nothing")?;
        self.adopt_session(&session)
    }

    /// Carries the session `session` (a createSession or createAccount answer) from now on.
    pub fn adopt_session(&self, session: &serde_json::Value) -> Result<(), String> {
        let access = session["accessJwt"]
            .as_str()
            .ok_or("the session answer has no accessJwt")?;
        *self.access.lock().map_err(|e| e.to_string())? = Some(access.to_owned());
        *self.refresh.lock().map_err(|e| e.to_string())? =
            session["refreshJwt"].as_str().map(str::to_owned);
        Ok(())
    }

    /// The session's access token, for calls made without atrium (streamed bodies).
    pub fn access_token(&self) -> Option<String> {
        self.access.lock().ok()?.clone()
    }

    /// The PDS's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Ends the session `sign_in` opened (`com.atproto.server.deleteSession`, which takes the
    /// refresh token), so that a command leaves no session behind.
    pub async fn sign_out(&self) -> Result<(), String> {
        let refresh = self.refresh.lock().map_err(|e| e.to_string())?.take();
        let Some(refresh) = refresh else {
            return Ok(());
        };
        let response = self
            .http
            .post(format!(
                "{}/xrpc/com.atproto.server.deleteSession",
                self.base
            ))
            .bearer_auth(refresh)
            .send()
            .await
            .map_err(|e| format!("com.atproto.server.deleteSession: {e}"))?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("com.atproto.server.deleteSession: HTTP {status}")),
        }
    }

    /// Calls procedure `nsid` with JSON `input`; its JSON output (`null` when it has none).
    pub async fn procedure(
        &self,
        nsid: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let output = self.call(Method::POST, nsid, Some(input)).await?;
        Ok(output.unwrap_or(serde_json::Value::Null))
    }

    /// Calls procedure `nsid`, which takes no input; its JSON output (`null` when it has none).
    pub async fn procedure_without_input(&self, nsid: &str) -> Result<serde_json::Value, String> {
        let output = self.call(Method::POST, nsid, None).await?;
        Ok(output.unwrap_or(serde_json::Value::Null))
    }

    /// Calls query `nsid` without parameters; its JSON output.
    pub async fn query(&self, nsid: &str) -> Result<serde_json::Value, String> {
        self.query_with(nsid, &[]).await
    }

    /// Calls query `nsid` with `params`; its JSON output.
    pub async fn query_with(
        &self,
        nsid: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let params = (!params.is_empty()).then(|| {
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        });
        let output = self.send(Method::GET, nsid, params, None).await?;
        output.ok_or_else(|| format!("{nsid} answered nothing"))
    }

    /// The head commit of `did`'s repository (`sync.getLatestCommit`, then its block from
    /// `sync.getBlocks`), read with the session if there is one (a deactivated account's owner
    /// may read it).
    pub async fn head_commit(&self, did: &str) -> Result<crate::repo::commit::Commit, String> {
        let latest = self
            .query_with("com.atproto.sync.getLatestCommit", &[("did", did)])
            .await?;
        let commit = latest["cid"]
            .as_str()
            .ok_or("getLatestCommit answered no CID")?;
        let url = format!(
            "{}/xrpc/com.atproto.sync.getBlocks?did={did}&cids={commit}",
            self.base
        );
        let mut request = self.http.get(&url);
        if let Some(token) = self.access_token() {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("getBlocks: {e}"))?;
        if response.status().as_u16() != 200 {
            return Err(format!("getBlocks: HTTP {}", response.status().as_u16()));
        }
        let car = response
            .bytes()
            .await
            .map_err(|e| format!("getBlocks: {e}"))?;
        let mut reader =
            crate::repo::car::CarReader::new(car.as_ref()).map_err(|e| e.to_string())?;
        while let Some((cid, bytes)) = reader.next_block().map_err(|e| e.to_string())? {
            if crate::data::cid_string(&cid) == commit {
                return crate::repo::commit::Commit::decode(&bytes).map_err(|e| e.to_string());
            }
        }
        Err(format!("getBlocks did not return commit {commit}"))
    }

    /// Every blob the records of `did` reference (`com.atproto.sync.listBlobs`, paged).
    pub async fn list_blobs(&self, did: &str) -> Result<Vec<String>, String> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("did", did), ("limit", "1000")];
            if let Some(c) = &cursor {
                params.push(("cursor", c.as_str()));
            }
            let page = self
                .query_with("com.atproto.sync.listBlobs", &params)
                .await?;
            let cids: Vec<String> = page["cids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            let more = !cids.is_empty();
            all.extend(cids);
            match page["cursor"].as_str() {
                Some(next) if more => cursor = Some(next.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        nsid: &str,
        input: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, String> {
        self.send(method, nsid, None, input).await
    }

    async fn send(
        &self,
        method: Method,
        nsid: &str,
        params: Option<Vec<(String, String)>>,
        input: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, String> {
        let request = XrpcRequest::<Vec<(String, String)>, serde_json::Value> {
            method,
            nsid: nsid.to_owned(),
            parameters: params,
            encoding: input.as_ref().map(|_| "application/json".to_owned()),
            input: input.map(InputDataOrBytes::Data),
        };
        match self
            .send_xrpc::<Vec<(String, String)>, _, serde_json::Value, serde_json::Value>(&request)
            .await
        {
            Ok(OutputDataOrBytes::Data(value)) => Ok(Some(value)),
            Ok(OutputDataOrBytes::Bytes(_)) => Ok(None),
            Err(atrium_xrpc::Error::XrpcResponse(e)) => Err(describe(nsid, &e)),
            Err(e) => Err(format!("{nsid}: {e}")),
        }
    }
}

/// The `#atproto_pds` service endpoint a DID document (as JSON) names.
pub fn pds_endpoint(doc: &serde_json::Value) -> Option<String> {
    doc["service"].as_array()?.iter().find(|s| {
        s["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("#atproto_pds"))
            && s["type"] == "AtprotoPersonalDataServer"
    })?["serviceEndpoint"]
        .as_str()
        .map(str::to_owned)
}

/// The `did:key` of a DID document's `#atproto` verification method.
pub fn atproto_key(doc: &serde_json::Value) -> Option<String> {
    doc["verificationMethod"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_str().is_some_and(|id| id.ends_with("#atproto")))?
        ["publicKeyMultibase"]
        .as_str()
        .map(|multibase| format!("did:key:{multibase}"))
}

/// Whether `error` (as the calls here describe failures) is the XRPC error `name`.
pub fn is_error(error: &str, name: &str) -> bool {
    // Errors a method declares come as its JSON body; others as `status name: message`.
    error.contains(&format!(" {name}: ")) || error.contains(&format!("\"error\":\"{name}\""))
}

/// An XRPC error answer as a line: the method, the error name and its message.
fn describe(nsid: &str, e: &atrium_xrpc::error::XrpcError<serde_json::Value>) -> String {
    use atrium_xrpc::error::XrpcErrorKind;
    match &e.error {
        Some(XrpcErrorKind::Undefined(body)) => format!(
            "{nsid}: {} {}: {}",
            e.status.as_u16(),
            body.error.as_deref().unwrap_or("error"),
            body.message.as_deref().unwrap_or("")
        ),
        Some(XrpcErrorKind::Custom(value)) => format!("{nsid}: {} {value}", e.status.as_u16()),
        None => format!("{nsid}: HTTP {}", e.status.as_u16()),
    }
}

impl HttpClient for Pds {
    async fn send_http(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let request = reqwest::Request::try_from(request)?;
        let response = self.http.execute(request).await?;
        let mut builder = Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let body = response.bytes().await?;
        Ok(builder.body(body.to_vec())?)
    }
}

impl XrpcClient for Pds {
    fn base_uri(&self) -> String {
        self.base.clone()
    }

    async fn authorization_token(&self, is_refresh: bool) -> Option<AuthorizationToken> {
        if is_refresh {
            return None;
        }
        let access = self.access.lock().ok()?.clone()?;
        Some(AuthorizationToken::Bearer(access))
    }
}

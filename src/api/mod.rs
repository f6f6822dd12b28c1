//! The HTTP API (`tally serve`, `api.md`): Kazoo's Services and Service_plans
//! endpoints over the operations layer.
//!
//! This face only translates: it authenticates the `X-Auth-Token`, reads the path,
//! query and `{"data": …}` body, calls one [`Operations`] method and wraps its answer or
//! refusal in Kazoo's envelope. Permissions, validation and every effect are the
//! operation's, so the command line and the API cannot disagree.

mod envelope;
mod login;
mod observe;
mod request;
pub mod routes;

pub use login::LoginSettings;
pub use observe::RequestMetrics;
pub use routes::{routes, Op, Route, Verb};

use crate::domain::token::TokenVerdict;
use crate::domain::AccountId;
use crate::ops::{Caller, ListQuery, Operations, OpsError, Rights, WriteMode};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::Router;
use envelope::{ApiError, Meta, Reply};
use request::Input;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The liveness and readiness check (outside Kazoo's tree, no token).
pub const HEALTH_PATH: &str = "/healthz";
/// The Prometheus metrics (outside Kazoo's tree, no token).
pub const METRICS_PATH: &str = "/metrics";
/// The routes outside Kazoo's tree, all GET (`observe.rs`).
pub const OPERATIONAL_ROUTES: [&str; 2] = [HEALTH_PATH, METRICS_PATH];

/// The token header (Kazoo's).
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";
/// The request id header, taken from the request when given and always answered.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Clone)]
struct AppState {
    ops: Operations,
    /// The envelope's `node`.
    node: Arc<str>,
    login: LoginSettings,
    failed_logins: Arc<login::FailedLogins>,
}

/// The API's router, built from [`routes()`]; any other method on a served path is a
/// 405 and any other path a 404, both in Kazoo's error envelope. Outside Kazoo's tree
/// and without a token: `GET /healthz` and `GET /metrics`. Every request goes through
/// the request-id, metrics and access-log middleware. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so audit logs get the
/// client's address.
pub fn router(ops: Operations) -> Router {
    router_with_login(ops, LoginSettings::default())
}

/// [`router`] with the login settings of the configuration.
pub fn router_with_login(ops: Operations, login: LoginSettings) -> Router {
    let observer = observe::Observer {
        metrics: RequestMetrics::default(),
    };
    let operational = Router::new()
        .route(HEALTH_PATH, axum::routing::get(observe::healthz))
        .with_state(ops.store().clone())
        .merge(
            Router::new()
                .route(METRICS_PATH, axum::routing::get(observe::metrics))
                .with_state(observer.clone()),
        );
    let state = AppState {
        ops,
        node: node_name().into(),
        login,
        failed_logins: Arc::default(),
    };
    let mut paths: BTreeMap<&'static str, Vec<(Verb, Op)>> = BTreeMap::new();
    for route in routes() {
        paths.entry(route.path).or_default().push((route.verb, route.op));
    }
    let mut router = Router::new();
    for (path, served) in paths {
        let mut methods: MethodRouter<AppState> = MethodRouter::new();
        for (verb, op) in served {
            methods = methods.on(
                verb.filter(),
                move |State(state): State<AppState>,
                      params: Result<Path<HashMap<String, String>>, PathRejection>,
                      request: Request| async move { handle(state, verb, op, params, request).await },
            );
        }
        methods = methods.fallback(move |State(state): State<AppState>, request: Request| async move {
            let meta = Meta::of(&state.node, request.headers());
            meta.failure(ApiError::method_not_allowed(path))
        });
        router = router.route(path, methods);
    }
    router
        .fallback(|State(state): State<AppState>, request: Request| async move {
            let meta = Meta::of(&state.node, request.headers());
            meta.failure(ApiError::not_found())
        })
        .with_state(state)
        .merge(operational)
        .layer(axum::middleware::from_fn_with_state(observer, observe::observe))
}

/// Serves the API on `listener` until `shutdown` completes, then lets the requests
/// in hand finish.
pub async fn serve(
    ops: Operations,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_login(ops, LoginSettings::default(), listener, shutdown).await
}

/// [`serve`] with the login settings of the configuration (`tally serve`).
pub async fn serve_with_login(
    ops: Operations,
    login: LoginSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router_with_login(ops, login).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// This machine's name, for the envelope's `node`.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "tally".to_owned())
}

async fn handle(
    state: AppState,
    verb: Verb,
    op: Op,
    params: Result<Path<HashMap<String, String>>, PathRejection>,
    request: Request,
) -> Response {
    let meta = Meta::of(&state.node, request.headers());
    if let Some(kind) = login_kind(op) {
        return match log_in(&state, kind, request).await {
            Ok(issued) => meta.issued(&issued.token, issued.data),
            Err(error) => meta.failure(error),
        };
    }
    let mut caller_account = None;
    let mut response = match run(&state.ops, &meta, verb, op, params, request, &mut caller_account).await {
        Ok((reply, revision)) => meta.success(reply, revision),
        Err(error) => meta.failure(error),
    };
    if let Some(account) = caller_account {
        response.extensions_mut().insert(observe::CallerAccount(account));
    }
    response
}

fn login_kind(op: Op) -> Option<login::LoginKind> {
    match op {
        Op::ApiAuth => Some(login::LoginKind::ApiKey),
        Op::UserAuth => Some(login::LoginKind::UserCredentials),
        _ => None,
    }
}

/// A login (`api_auth`, `user_auth`): no token, the body's `data` is the credentials.
async fn log_in(state: &AppState, kind: login::LoginKind, request: Request) -> Result<login::Issued, ApiError> {
    let (parts, body) = request.into_parts();
    let input = Input::read(body).await?;
    login::login(
        &state.ops,
        &state.login,
        &state.failed_logins,
        client_address(&parts),
        kind,
        &input.data,
    )
    .await
}

/// The address the request came from, when the server was given it.
fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The credentials come first: a request without a valid token is 401 whatever its
/// body, so nothing about the body is revealed to an anonymous caller.
/// `caller_account` is set once the caller is known, for the access log. The answer
/// comes with the services record's revision where it is one.
async fn run(
    ops: &Operations,
    meta: &Meta,
    verb: Verb,
    op: Op,
    params: Result<Path<HashMap<String, String>>, PathRejection>,
    request: Request,
    caller_account: &mut Option<AccountId>,
) -> Result<(Reply, Option<i64>), ApiError> {
    let (parts, body) = request.into_parts();
    if op == Op::Inventory {
        // Documents, not a `{"data": …}` envelope; large, so credentials come first.
        let caller = authenticate(ops, meta, &parts).await?;
        *caller_account = caller.account().cloned();
        let body = request::read_documents_body(body).await?;
        let database = request::query_value(&parts.uri, "database");
        let reply = ops.ingest_documents(&caller, &body, database.as_deref()).await?.into();
        return Ok((reply, None));
    }
    let caller = authenticate(ops, meta, &parts).await?;
    *caller_account = caller.account().cloned();
    let input = Input::read(body).await?;
    let Path(params) = params.map_err(|rejection| OpsError::BadIdentifier {
        cause: rejection.body_text(),
    })?;
    let query = match op.is_listing() {
        true => request::list_query(&parts.uri)?,
        false => ListQuery::new(),
    };
    let mode = match (verb, input.merge) {
        (Verb::Patch, _) | (_, true) => WriteMode::Merge,
        _ => WriteMode::Replace,
    };
    let target = Target { params: &params };
    let data = &input.data;
    let dry_run = match request::query_value(&parts.uri, "dry_run").as_deref() {
        None | Some("false") => false,
        Some("true") if op.has_dry_run() => true,
        Some("true") => return Err(OpsError::field("dry_run", "type", "this route has no dry run").into()),
        Some(_) => return Err(OpsError::field("dry_run", "type", "must be true or false").into()),
    };
    let (previewing, preview) = ops.previewing();
    let ops = if dry_run { &previewing } else { ops };
    let reply = match op {
        Op::ServicesPlans => ops.services_plans(&caller, &target.account()?).await?.into(),
        Op::UpdateServices => ops
            .update_services(&caller, &target.account()?, data, mode)
            .await?
            .into(),
        Op::ServicesStatus => ops.services_status(&caller, &target.account()?).await?.into(),
        Op::SetServicesStatus => ops.set_services_status(&caller, &target.account()?, data).await?.into(),
        Op::AuditLogs => ops.audit_logs(&caller, &target.account()?, &query).await?.into(),
        Op::AuditLog => ops
            .audit_log(&caller, &target.account()?, target.get("audit_id")?)
            .await?
            .into(),
        Op::AuditSummary => ops
            .audit_summary(&caller, &target.account()?, &query, None)
            .await?
            .into(),
        Op::AuditSummaryOfSource => ops
            .audit_summary(&caller, &target.account()?, &query, Some(target.get("source")?))
            .await?
            .into(),
        Op::AssignPlan => ops
            .assign_plan(&caller, &target.account()?, target.get("plan_id")?, data, mode)
            .await?
            .into(),
        Op::UnassignPlan => ops
            .unassign_plan(&caller, &target.account()?, target.get("plan_id")?)
            .await?
            .into(),
        Op::ManualQuantities => ops.manual_quantities(&caller, &target.account()?).await?.into(),
        Op::SetManualQuantities => ops
            .set_manual_quantities(&caller, &target.account()?, data, mode)
            .await?
            .into(),
        Op::Overrides => ops.overrides(&caller, &target.account()?).await?.into(),
        Op::SetOverrides => ops.set_overrides(&caller, &target.account()?, data, mode).await?.into(),
        Op::Quote => ops.quote(&caller, Some(&target.account()?), data).await?.into(),
        Op::QuoteWithoutAccount => ops.quote(&caller, None, data).await?.into(),
        Op::Reconcile => ops.reconcile_account(&caller, &target.account()?).await?.into(),
        Op::Synchronize => ops.synchronize_account(&caller, &target.account()?).await?.into(),
        Op::Topup => ops.topup(&caller, &target.account()?, data).await?.into(),
        Op::Summary => ops.services_summary(&caller, &target.account()?).await?.into(),
        Op::Explain => {
            let item = request::query_value(&parts.uri, "item");
            ops.explain(&caller, &target.account()?, item.as_deref()).await?.into()
        }
        Op::AvailablePlans => ops.available_plans(&caller, &target.account()?, &query).await?.into(),
        Op::Editable => ops.editable(&caller, Some(&target.account()?)).await?.into(),
        Op::EditableWithoutAccount => ops.editable(&caller, None).await?.into(),
        Op::VendorPlans => ops.vendor_plans(&caller, &target.account()?, &query).await?.into(),
        Op::UpdateServicePlans => ops
            .update_service_plans(&caller, &target.account()?, data)
            .await?
            .into(),
        Op::VendorPlan => ops
            .vendor_plan(&caller, &target.account()?, target.get("plan_id")?)
            .await?
            .into(),
        Op::AddServicePlan => ops
            .add_service_plan(&caller, &target.account()?, target.get("plan_id")?)
            .await?
            .into(),
        Op::RemoveServicePlan => ops
            .remove_service_plan(&caller, &target.account()?, target.get("plan_id")?)
            .await?
            .into(),
        Op::OverrideServicePlans => ops
            .override_service_plans(&caller, &target.account()?, input.overrides_body())
            .await?
            .into(),
        Op::CurrentServices => ops.current_services(&caller, &target.account()?).await?.into(),
        Op::Inventory => unreachable!("answered above, before the body is read as JSON"),
        Op::ApiAuth | Op::UserAuth => unreachable!("logins are answered by `log_in`"),
        Op::AvailablePlan => ops
            .available_plan(&caller, &target.account()?, target.get("plan_id")?)
            .await?
            .into(),
    };
    if dry_run {
        // The operation checked and decided its change, and wrote nothing: the answer
        // is the change's impact.
        let impact = preview
            .take()
            .ok_or_else(|| OpsError::Fault("the dry run decided no change".to_owned()))?;
        return Ok((impact.into(), None));
    }
    // Read after the operation, so a write answers the revision it (and its commit) made.
    let revision = match op.answers_services_record() {
        true => ops
            .store()
            .services_revision(&target.account()?)
            .await
            .map_err(OpsError::from)?,
        false => None,
    };
    Ok((reply, revision))
}

/// The path's captures.
struct Target<'a> {
    params: &'a HashMap<String, String>,
}

impl Target<'_> {
    fn get(&self, name: &str) -> Result<&str, OpsError> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| OpsError::BadIdentifier { cause: name.to_owned() })
    }

    fn account(&self) -> Result<AccountId, OpsError> {
        let text = self.get("account_id")?;
        AccountId::parse(text).map_err(|_| OpsError::BadIdentifier { cause: text.to_owned() })
    }
}

/// The caller of a request: the token's account and rights, and what its audit logs
/// say about the request (`audit-and-summaries.md` §2).
async fn authenticate(ops: &Operations, meta: &Meta, parts: &Parts) -> Result<Caller, ApiError> {
    let token = parts
        .headers
        .get(AUTH_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(ApiError::invalid_credentials)?;
    let Some(presented) = ops.store().token_access(token).await.map_err(OpsError::from)? else {
        return Err(ApiError::invalid_credentials());
    };
    let super_admin = match presented.stored.verdict(ops.now()) {
        TokenVerdict::Granted { super_admin } => super_admin,
        TokenVerdict::Invalid => return Err(ApiError::invalid_credentials()),
        // A disabled account, or a super-admin row of a sub-account: known, refused.
        TokenVerdict::AccountDisabled | TokenVerdict::SuperAdminOffMaster => return Err(OpsError::Forbidden.into()),
    };
    let account = presented.account;
    let client_ip = client_address(parts)
        .map(|address| address.to_string())
        .unwrap_or_else(|| "undefined".to_owned());
    let audit = serde_json::json!({
        "crossbar_request": true,
        "authentication": {
            "type": "x-auth-token",
            "account_id": account.as_str(),
            "account_name": presented.account_name,
        },
        "request": {
            "id": meta.request_id,
            "client_ip": client_ip,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
        },
    });
    Ok(Caller {
        rights: Rights::Token { account, super_admin },
        audit,
    })
}

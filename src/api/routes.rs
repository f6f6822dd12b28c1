//! The route table: every (method, path) the API serves and the operation behind it.
//! The router is built from this table and the OpenAPI document is checked against
//! it, so the three cannot drift apart.

use axum::http::Method;
use axum::routing::MethodFilter;

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Put => Method::PUT,
            Verb::Post => Method::POST,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// The operation a route runs (one `Operations` method each, `api.md` §2-§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ServicesPlans,
    UpdateServices,
    ServicesStatus,
    SetServicesStatus,
    AuditLogs,
    AuditLog,
    AuditSummary,
    AuditSummaryOfSource,
    AssignPlan,
    UnassignPlan,
    ManualQuantities,
    SetManualQuantities,
    Overrides,
    SetOverrides,
    Quote,
    QuoteWithoutAccount,
    Reconcile,
    Synchronize,
    Topup,
    Summary,
    /// `GET …/services/explain`: how every invoice line was reached (issue 15).
    Explain,
    AvailablePlans,
    Editable,
    EditableWithoutAccount,
    VendorPlans,
    UpdateServicePlans,
    VendorPlan,
    AddServicePlan,
    RemoveServicePlan,
    OverrideServicePlans,
    CurrentServices,
    AvailablePlan,
    /// `POST /v2/inventory`: the platform's documents (super admin).
    Inventory,
    /// `PUT /v2/api_auth`: Kazoo's login with an account's api key (no token needed).
    ApiAuth,
    /// `PUT /v2/user_auth`: Kazoo's login with a user's credentials (no token needed).
    UserAuth,
}

impl Op {
    /// Whether the route needs an `X-Auth-Token` (everything but the logins).
    pub fn needs_token(self) -> bool {
        !matches!(self, Op::ApiAuth | Op::UserAuth)
    }

    /// Whether the operation reads listing parameters (`page_size`, `created_from`, …).
    pub fn is_listing(self) -> bool {
        matches!(
            self,
            Op::AuditLogs | Op::AuditSummary | Op::AuditSummaryOfSource | Op::AvailablePlans | Op::VendorPlans
        )
    }
}

impl Op {
    /// Whether the answer is (a part of) the account's services record, whose
    /// revision the envelope's `revision` then carries, as Kazoo's carries the
    /// services document's `_rev`. Listings, audit logs, plan documents, quotes and
    /// operations without a stored document answer `undefined`.
    pub fn answers_services_record(self) -> bool {
        match self {
            Op::ServicesPlans
            | Op::UpdateServices
            | Op::ServicesStatus
            | Op::SetServicesStatus
            | Op::AssignPlan
            | Op::UnassignPlan
            | Op::ManualQuantities
            | Op::SetManualQuantities
            | Op::Overrides
            | Op::SetOverrides
            | Op::Summary
            | Op::UpdateServicePlans
            | Op::AddServicePlan
            | Op::RemoveServicePlan
            | Op::OverrideServicePlans
            | Op::CurrentServices => true,
            Op::ApiAuth
            | Op::UserAuth
            | Op::AuditLogs
            | Op::AuditLog
            | Op::AuditSummary
            | Op::AuditSummaryOfSource
            | Op::Quote
            | Op::QuoteWithoutAccount
            | Op::Reconcile
            | Op::Synchronize
            | Op::Topup
            | Op::Explain
            | Op::AvailablePlans
            | Op::Editable
            | Op::EditableWithoutAccount
            | Op::VendorPlans
            | Op::VendorPlan
            | Op::AvailablePlan
            | Op::Inventory => false,
        }
    }
}

impl Op {
    /// Whether `?dry_run=true` answers the impact of the write instead of making it:
    /// the writes that change an account's plans or overrides (issue 15).
    pub fn has_dry_run(self) -> bool {
        match self {
            Op::UpdateServices
            | Op::AssignPlan
            | Op::UnassignPlan
            | Op::SetOverrides
            | Op::UpdateServicePlans
            | Op::AddServicePlan
            | Op::RemoveServicePlan
            | Op::OverrideServicePlans => true,
            Op::ServicesPlans
            | Op::ServicesStatus
            | Op::SetServicesStatus
            | Op::ManualQuantities
            | Op::SetManualQuantities
            | Op::Overrides
            | Op::Summary
            | Op::CurrentServices
            | Op::ApiAuth
            | Op::UserAuth
            | Op::AuditLogs
            | Op::AuditLog
            | Op::AuditSummary
            | Op::AuditSummaryOfSource
            | Op::Quote
            | Op::QuoteWithoutAccount
            | Op::Reconcile
            | Op::Synchronize
            | Op::Topup
            | Op::Explain
            | Op::AvailablePlans
            | Op::Editable
            | Op::EditableWithoutAccount
            | Op::VendorPlans
            | Op::VendorPlan
            | Op::AvailablePlan
            | Op::Inventory => false,
        }
    }
}

/// One served (method, path). Paths use axum's `{name}` captures, which are also
/// OpenAPI's path templates.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub op: Op,
}

const fn route(verb: Verb, path: &'static str, op: Op) -> Route {
    Route { verb, path, op }
}

use Op::*;
use Verb::{Delete, Get, Patch, Post, Put};

const SERVICES: &str = "/v2/accounts/{account_id}/services";

static ROUTES: &[Route] = &[
    route(Get, SERVICES, ServicesPlans),
    route(Post, SERVICES, UpdateServices),
    route(Get, "/v2/accounts/{account_id}/services/status", ServicesStatus),
    route(Post, "/v2/accounts/{account_id}/services/status", SetServicesStatus),
    route(Get, "/v2/accounts/{account_id}/services/audit", AuditLogs),
    route(Get, "/v2/accounts/{account_id}/services/audit/{audit_id}", AuditLog),
    route(Get, "/v2/accounts/{account_id}/services/audit/summary", AuditSummary),
    route(
        Get,
        "/v2/accounts/{account_id}/services/audit/summary/{source}",
        AuditSummaryOfSource,
    ),
    // The old 4.3 path of the same view (`api.md` §2.8).
    route(
        Get,
        "/v2/accounts/{account_id}/services/audit_summary/{source}",
        AuditSummaryOfSource,
    ),
    route(Post, "/v2/accounts/{account_id}/services/{plan_id}", AssignPlan),
    route(Delete, "/v2/accounts/{account_id}/services/{plan_id}", UnassignPlan),
    route(Get, "/v2/accounts/{account_id}/services/manual", ManualQuantities),
    route(Post, "/v2/accounts/{account_id}/services/manual", SetManualQuantities),
    route(Patch, "/v2/accounts/{account_id}/services/manual", SetManualQuantities),
    route(Get, "/v2/accounts/{account_id}/services/overrides", Overrides),
    route(Post, "/v2/accounts/{account_id}/services/overrides", SetOverrides),
    route(Patch, "/v2/accounts/{account_id}/services/overrides", SetOverrides),
    route(Post, "/v2/accounts/{account_id}/services/quote", Quote),
    route(Post, "/v2/services/quote", QuoteWithoutAccount),
    route(Post, "/v2/accounts/{account_id}/services/reconciliation", Reconcile),
    route(Post, "/v2/accounts/{account_id}/services/synchronization", Synchronize),
    route(Post, "/v2/accounts/{account_id}/services/topup", Topup),
    route(Get, "/v2/accounts/{account_id}/services/summary", Summary),
    route(Get, "/v2/accounts/{account_id}/services/explain", Explain),
    route(Get, "/v2/accounts/{account_id}/services/available", AvailablePlans),
    route(Get, "/v2/accounts/{account_id}/services/editable", Editable),
    route(Get, "/v2/services/editable", EditableWithoutAccount),
    route(Get, "/v2/accounts/{account_id}/service_plans", VendorPlans),
    route(Post, "/v2/accounts/{account_id}/service_plans", UpdateServicePlans),
    route(Get, "/v2/accounts/{account_id}/service_plans/{plan_id}", VendorPlan),
    route(
        Post,
        "/v2/accounts/{account_id}/service_plans/{plan_id}",
        AddServicePlan,
    ),
    route(
        Delete,
        "/v2/accounts/{account_id}/service_plans/{plan_id}",
        RemoveServicePlan,
    ),
    route(
        Post,
        "/v2/accounts/{account_id}/service_plans/override",
        OverrideServicePlans,
    ),
    route(Get, "/v2/accounts/{account_id}/service_plans/current", CurrentServices),
    route(Get, "/v2/accounts/{account_id}/service_plans/available", AvailablePlans),
    route(
        Get,
        "/v2/accounts/{account_id}/service_plans/available/{plan_id}",
        AvailablePlan,
    ),
    route(
        Post,
        "/v2/accounts/{account_id}/service_plans/synchronization",
        Synchronize,
    ),
    route(
        Post,
        "/v2/accounts/{account_id}/service_plans/reconciliation",
        Reconcile,
    ),
    route(Get, "/v2/accounts/{account_id}/service_plans/editable", Editable),
    route(Post, "/v2/inventory", Inventory),
    route(Put, "/v2/api_auth", ApiAuth),
    route(Put, "/v2/user_auth", UserAuth),
];

/// Every route the server has.
pub fn routes() -> &'static [Route] {
    ROUTES
}

/// The methods served on `path`, for the `Allow` header of a 405.
pub(crate) fn allowed(path: &str) -> Vec<Verb> {
    let mut verbs: Vec<Verb> = ROUTES
        .iter()
        .filter(|route| route.path == path)
        .map(|route| route.verb)
        .collect();
    verbs.sort();
    verbs.dedup();
    verbs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_method_and_path_is_served_once() {
        let mut seen = HashSet::new();
        for route in routes() {
            assert!(
                seen.insert((route.verb, route.path)),
                "{} {} twice",
                route.verb.as_str(),
                route.path
            );
        }
    }
}

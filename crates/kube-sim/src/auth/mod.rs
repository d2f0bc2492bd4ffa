//! Authentication, impersonation and authorization, in the order the real
//! API server's filters run them: a bearer token names a user, the
//! `Impersonate-*` headers may replace that user (if RBAC lets the requester
//! `impersonate`), and the RBAC authorizer decides the request.
//!
//! Admin by default: a request without a token, or with the `kube-sim` token
//! every default kubeconfig carries, is `kube-sim-admin` in `system:masters`,
//! which the bootstrap `cluster-admin` binding allows everything. Named users
//! and ServiceAccounts get their own tokens ([`Tokens`]).

pub mod attributes;
pub mod audit;
pub mod bootstrap;
pub mod rbac;
pub mod review;
pub mod tls;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;

use crate::status::ApiError;
use crate::store::Store;

pub use attributes::Attributes;

/// The token of the default (admin) kubeconfig.
pub const ADMIN_TOKEN: &str = "kube-sim";
/// The user a request without a token, or with [`ADMIN_TOKEN`], runs as.
pub const ADMIN_USER: &str = "kube-sim-admin";

pub const AUTHENTICATED: &str = "system:authenticated";
pub const MASTERS: &str = "system:masters";
const SA_PREFIX: &str = "system:serviceaccount:";

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: String,
}

impl UserInfo {
    pub fn admin() -> Self {
        UserInfo {
            name: ADMIN_USER.into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
            uid: String::new(),
        }
    }

    /// A named user with its groups; `system:authenticated` is added, as the
    /// real authenticators do.
    pub fn user(name: &str, groups: &[String]) -> Self {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        UserInfo {
            name: name.into(),
            groups,
            uid: String::new(),
        }
    }

    /// `system:serviceaccount:NS:NAME` in `system:serviceaccounts` and
    /// `system:serviceaccounts:NS`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo::user(
            &format!("{SA_PREFIX}{namespace}:{name}"),
            &[
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }

    /// `(namespace, name)` of a ServiceAccount's user name.
    fn service_account_parts(name: &str) -> Option<(&str, &str)> {
        name.strip_prefix(SA_PREFIX)?.split_once(':')
    }
}

/// What a token stands for.
#[derive(Debug, Clone)]
enum Holder {
    Admin,
    User {
        name: String,
        groups: Vec<String>,
    },
    /// Valid while the ServiceAccount exists, as a bound token.
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

/// The bearer tokens the server accepts.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: Mutex<HashMap<String, Holder>>,
}

impl Tokens {
    fn issue(&self, holder: Holder) -> String {
        let token = format!(
            "kube-sim-{:016x}{:016x}",
            crate::util::random_u64(),
            crate::util::random_u64()
        );
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), holder);
        token
    }

    /// A token for a named user in the given groups.
    pub fn issue_user(&self, name: &str, groups: &[String]) -> String {
        self.issue(Holder::User {
            name: name.into(),
            groups: groups.to_vec(),
        })
    }

    /// A token for a ServiceAccount; requests with it are refused (401) while
    /// the ServiceAccount does not exist.
    pub fn issue_service_account(&self, namespace: &str, name: &str) -> String {
        self.issue(Holder::ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// The user of a request's `Authorization` header.
    pub fn authenticate(&self, headers: &HeaderMap, store: &Store) -> Result<UserInfo, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(UserInfo::admin());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let holder = if token == ADMIN_TOKEN {
            Holder::Admin
        } else {
            self.issued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(token)
                .cloned()
                .ok_or_else(unauthorized)?
        };
        match holder {
            Holder::Admin => Ok(UserInfo::admin()),
            Holder::User { name, groups } => Ok(UserInfo::user(&name, &groups)),
            Holder::ServiceAccount { namespace, name } => {
                let key = (String::new(), "serviceaccounts".to_string());
                if store.get(&key, &namespace, &name).is_none() {
                    return Err(unauthorized());
                }
                Ok(UserInfo::service_account(&namespace, &name))
            }
        }
    }
}

/// The real server's answer to a token it does not know.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The user a request runs as after the `Impersonate-*` headers, each
/// impersonation checked with the `impersonate` verb as the real filter does.
pub fn impersonate(
    store: &Store,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let uids = values("impersonate-uid");
    let Some(user) = users.first() else {
        if !groups.is_empty() || !uids.is_empty() {
            return Err(ApiError::bad_request(format!(
                "requested {:?} without impersonating a user",
                groups
            )));
        }
        return Ok(requester);
    };
    let check = |attrs: Attributes| -> Result<(), ApiError> {
        let decision = decide(store, &requester, &attrs);
        if decision.allowed {
            Ok(())
        } else {
            Err(rbac::forbidden(&requester, &attrs, &decision.reason))
        }
    };
    let mut target = match UserInfo::service_account_parts(user) {
        Some((ns, name)) => {
            check(Attributes::impersonate("serviceaccounts", ns, name))?;
            if groups.is_empty() {
                UserInfo::service_account(ns, name)
            } else {
                UserInfo::user(user, &[])
            }
        }
        None => {
            check(Attributes::impersonate("users", "", user))?;
            UserInfo::user(user, &[])
        }
    };
    let mut impersonated_groups = Vec::new();
    for g in &groups {
        check(Attributes::impersonate("groups", "", g))?;
        impersonated_groups.push(g.clone());
    }
    for u in &uids {
        check(Attributes::impersonate("uids", "", u))?;
        target.uid = u.clone();
    }
    if !impersonated_groups.is_empty() {
        impersonated_groups.extend(
            target
                .groups
                .iter()
                .filter(|g| !impersonated_groups.contains(g))
                .cloned()
                .collect::<Vec<_>>(),
        );
        target.groups = impersonated_groups;
    }
    Ok(target)
}

/// The authorizer chain of a real API server: members of `system:masters`
/// are allowed everything before RBAC is asked (so an admin request costs no
/// rule evaluation), everyone else is decided by RBAC.
pub fn decide(store: &Store, user: &UserInfo, attrs: &Attributes) -> rbac::Decision {
    if user.groups.iter().any(|g| g == MASTERS) {
        return rbac::Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    rbac::authorize(store, user, attrs)
}

/// Authentication, impersonation and RBAC for one request: the user it runs
/// as, or the 401/403 the real server answers.
pub fn admit(
    tokens: &Tokens,
    audit: &audit::Audit,
    store: &Store,
    headers: &HeaderMap,
    attrs: &Attributes,
) -> Result<UserInfo, ApiError> {
    let requester = tokens.authenticate(headers, store).inspect_err(|e| {
        audit.record(None, attrs, Some(&e.message));
    })?;
    let user = impersonate(store, requester.clone(), headers).inspect_err(|e| {
        audit.record(Some(&requester), attrs, Some(&e.message));
    })?;
    let decision = decide(store, &user, attrs);
    if decision.allowed {
        audit.record(Some(&user), attrs, None);
        Ok(user)
    } else {
        let e = rbac::forbidden(&user, attrs, &decision.reason);
        audit.record(Some(&user), attrs, Some(&e.message));
        Err(e)
    }
}

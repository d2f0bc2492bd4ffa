//! The HTTP layer: routing, request counting, faults, and the handlers that
//! turn requests into store operations and Status errors.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::discovery;
use crate::faults::{FailRule, Faults};
use crate::ops::{DeleteOpts, PatchType, Propagation, WriteOpts, list_object};
use crate::request::{Query, ResourcePath, Route, parse_route, verb_of};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::stats::Counters;
use crate::status::{ApiError, ApiResult};
use crate::store::Store;
use crate::table::Repr;
use crate::{SimConfig, watch};

/// State shared by the handlers, the controllers and the library handle.
pub struct Shared {
    pub store: Arc<Mutex<Store>>,
    pub config: SimConfig,
    pub stats: Counters,
    pub faults: Faults,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub server_address: String,
    pub tokens: crate::auth::Tokens,
    pub audit: crate::auth::audit::Audit,
}

impl Shared {
    /// The store. A panic while it was held (a bug) must not take the whole
    /// simulated cluster down with it, so a poisoned lock is taken over.
    pub fn lock(&self) -> ApiResult<std::sync::MutexGuard<'_, Store>> {
        Ok(self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sim/stats", get(admin_stats))
        .route("/sim/faults/fail", post(admin_fail))
        .route("/sim/faults/latency", post(admin_latency))
        .route("/sim/faults/close-watches", post(admin_close_watches))
        .route("/sim/faults/expire-watches", post(admin_expire_watches))
        .route("/sim/faults/unreachable", post(admin_unreachable))
        .route("/sim/faults", axum::routing::delete(admin_clear))
        .route("/sim/history/start", post(admin_history_start))
        .route("/sim/history", get(admin_history))
        .fallback(api)
        .with_state(shared)
}

fn json_response(code: u16, v: &Value) -> Response {
    bytes_response(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn bytes_response(code: u16, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

async fn admin_stats(State(s): State<Arc<Shared>>) -> Response {
    json_response(200, &json!({ "requests": s.stats.snapshot() }))
}

async fn admin_fail(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FailRule>(&body) {
        Ok(rule) => {
            s.faults.fail_next(rule);
            json_response(200, &json!({"ok": true}))
        }
        Err(e) => error_response(&ApiError::bad_request(format!(
            "expected {{\"verb\": \"get\", \"path\": \"/apis/...\", \"code\": 500, \"count\": 1}}: {e}"
        ))),
    }
}

fn duration_field(body: &[u8], field: &str) -> Result<std::time::Duration, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("expected {{\"{field}\": \"200ms\"}}")))?;
    humantime::parse_duration(s).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

async fn admin_latency(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match duration_field(&body, "latency") {
        Ok(d) => {
            s.faults.set_latency(d);
            json_response(200, &json!({"ok": true}))
        }
        Err(e) => error_response(&e),
    }
}

async fn admin_unreachable(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match duration_field(&body, "duration") {
        Ok(d) => {
            s.faults.unreachable_for(d);
            json_response(200, &json!({"ok": true}))
        }
        Err(e) => error_response(&e),
    }
}

async fn admin_close_watches(State(s): State<Arc<Shared>>) -> Response {
    s.faults.close_watches();
    json_response(200, &json!({"ok": true}))
}

async fn admin_expire_watches(State(s): State<Arc<Shared>>) -> Response {
    s.faults.expire_watches();
    json_response(200, &json!({"ok": true}))
}

async fn admin_history_start(State(s): State<Arc<Shared>>) -> Response {
    match s.lock() {
        Ok(mut store) => {
            store.start_recording();
            json_response(200, &json!({"ok": true}))
        }
        Err(e) => error_response(&e),
    }
}

/// `{"recording": bool, "changes": [{rv, change, group, resource, namespace, name, object}]}`;
/// `?resource=jobs` keeps one resource's changes.
async fn admin_history(State(s): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let q = Query::parse(uri.query());
    let store = match s.lock() {
        Ok(store) => store,
        Err(e) => return error_response(&e),
    };
    let mut changes = store.recorded();
    drop(store);
    if let Some(resource) = q.get("resource") {
        changes.retain(|c| c.resource == resource);
    }
    json_response(200, &json!({ "changes": changes }))
}

async fn admin_clear(State(s): State<Arc<Shared>>) -> Response {
    s.faults.clear();
    json_response(200, &json!({"ok": true}))
}

fn fault_error(code: u16) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(code, reason, format!("kube-sim: injected fault ({code})"))
}

fn lock_store(shared: &Shared) -> std::sync::MutexGuard<'_, Store> {
    shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every Kubernetes API path.
async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if shared.faults.is_unreachable() {
        let mut r = error_response(&ApiError::new(
            503,
            "ServiceUnavailable",
            "kube-sim: unreachable (injected fault)",
        ));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let headers = req.headers().clone();
    let route = {
        let store = lock_store(&shared);
        parse_route(&path, |g, v, p| {
            store.registry.lookup(g, v, p).is_some_and(|t| t.namespaced)
        })
    };
    let verb = verb_of(&method, &route, &query);
    shared.stats.count(verb);
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = shared.faults.take_failure(verb, &path) {
        return error_response(&fault_error(code));
    }
    let attrs = crate::auth::Attributes::of_request(&method, &path, &route, &query);
    let user = match crate::auth::admit(
        &shared.tokens,
        &shared.audit,
        &lock_store(&shared),
        &headers,
        &attrs,
    ) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading the body: {e}"))),
    };
    // Typed Go clients (`kubectl create …`, `kubectl run`) send protobuf.
    let body = match decoded_body(&headers, body) {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    tracing::debug!(%method, %path, ?verb, user = %user.name, "request");
    if let Route::Resource(rp) = &route
        && method == "POST"
        && crate::auth::review::is_review(rp)
    {
        let answer = parse_body(&body)
            .and_then(|b| crate::auth::review::answer(&lock_store(&shared), &user, rp, &b));
        return match answer {
            Ok(review) => json_response(201, &review),
            Err(e) => error_response(&e),
        };
    }
    match dispatch(&shared, &method, route, &query, &headers, &body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// A protobuf body as the JSON it stands for; any other body as it is.
fn decoded_body(headers: &HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !crate::proto::is_protobuf(content_type) {
        return Ok(body);
    }
    let obj = crate::proto::decode_body(&body)?;
    Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()))
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &str,
    route: Route,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if method != "GET" && !matches!(route, Route::Resource(_)) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    let store = || shared.lock();
    match route {
        Route::Version => Ok(json_response(200, &discovery::version())),
        Route::Health => Ok(bytes_response(200, "text/plain", b"ok".to_vec())),
        Route::Api if discovery::wants_aggregated(accept) => {
            let v = discovery::aggregated(&store()?.registry, true);
            Ok(aggregated_response(&v))
        }
        Route::Api => Ok(json_response(
            200,
            &discovery::api_versions(&shared.server_address),
        )),
        Route::Apis if discovery::wants_aggregated(accept) => {
            let v = discovery::aggregated(&store()?.registry, false);
            Ok(aggregated_response(&v))
        }
        Route::Apis => Ok(json_response(
            200,
            &discovery::api_group_list(&store()?.registry),
        )),
        Route::Group(g) => discovery::api_group(&store()?.registry, &g)
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::GroupVersion(g, v) => discovery::resource_list(&store()?.registry, &g, &v)
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::OpenApiV2 if accept.contains("protobuf") => Ok(bytes_response(
            200,
            discovery::OPENAPI_V2_PROTOBUF,
            discovery::openapi_v2_protobuf(),
        )),
        Route::OpenApiV2 => Ok(json_response(200, &discovery::openapi_v2_json())),
        Route::OpenApiV3Root => Ok(json_response(
            200,
            &discovery::openapi_v3_root(&store()?.registry),
        )),
        Route::OpenApiV3(g, v) => discovery::openapi_v3_doc(&store()?.registry, &g, &v)
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::Unknown => Err(ApiError::path_not_found()),
        Route::Resource(rp) => resource(shared, method, rp, query, headers, body).await,
    }
}

fn aggregated_response(v: &Value) -> Response {
    bytes_response(
        200,
        discovery::AGGREGATED_CONTENT_TYPE,
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn write_opts(
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    headers: &HeaderMap,
) -> WriteOpts {
    let manager = query
        .nonempty("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| {
            // The real server names an unnamed manager after the user agent's product.
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect()
        });
    WriteOpts {
        dry_run: query.get("dryRun") == Some("All"),
        manager,
        subresource: rp.subresource.clone().unwrap_or_default(),
        api_version: rt.api_version(&rp.version),
        // Checked in `resource` before any write.
        field_validation: crate::schema::FieldValidation::from_query(query.get("fieldValidation"))
            .unwrap_or(crate::schema::FieldValidation::Strict),
        warnings: Default::default(),
    }
}

/// A response with the write's warnings as `Warning: 299 - "…"` headers.
fn with_warnings(mut r: Response, opts: &WriteOpts) -> Response {
    for w in opts.warnings.take() {
        let text = format!("299 - {}", serde_json::to_string(&w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// The output form of a stored object for the request's version.
fn versioned(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    if rt.from_crd {
        v["apiVersion"] = json!(rt.api_version(version));
    }
    v
}

async fn resource(
    shared: &Arc<Shared>,
    method: &str,
    rp: ResourcePath,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let rt = {
        let store = shared.lock()?;
        store
            .registry
            .lookup(&rp.group, &rp.version, &rp.plural)
            .cloned()
            .ok_or_else(ApiError::path_not_found)?
    };
    match (&rp.namespace, rt.namespaced, &rp.name) {
        (Some(_), false, _) => return Err(ApiError::path_not_found()),
        (None, true, Some(_)) => return Err(ApiError::path_not_found()),
        _ => {}
    }
    match rp.subresource.as_deref() {
        None => {}
        Some("status") if rt.has_status => {}
        Some("log") if rt.has_log && method == "GET" => {}
        Some("scale") if rt.has_scale => {
            return scale(shared, method, &rt, &rp, query, headers, body);
        }
        Some(_) => return Err(ApiError::path_not_found()),
    }
    crate::schema::FieldValidation::from_query(query.get("fieldValidation"))?;
    let ns = rp.namespace.clone().unwrap_or_default();
    let version = rp.version.clone();
    let ok = |code: u16, obj: &Value| Ok(json_response(code, &versioned(&rt, &version, obj)));
    match (method, &rp.name) {
        ("GET", Some(name)) => {
            let obj = {
                let store = shared.lock()?;
                let key_ns = if rt.namespaced { ns.as_str() } else { "" };
                store
                    .get(&rt.key(), key_ns, name)
                    .ok_or_else(|| ApiError::not_found(&rt, name))?
            };
            if rp.subresource.as_deref() == Some("log") {
                let mut log = crate::controllers::job::pod_log(&obj);
                if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                    let lines: Vec<&str> = log.lines().collect();
                    let start = lines.len().saturating_sub(n);
                    log = lines[start..].iter().map(|l| format!("{l}\n")).collect();
                }
                if let Some(n) = query
                    .get("limitBytes")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    log = String::from_utf8_lossy(&log.as_bytes()[..n.min(log.len())]).into_owned();
                }
                return Ok(bytes_response(200, "text/plain", log.into_bytes()));
            }
            match crate::table::repr(accept(headers)) {
                Repr::Table => {
                    let mut t = crate::table::table(&rt, &[&*obj], None, None);
                    include_objects(&mut t, &rt, &version, &[&*obj], query);
                    Ok(json_response(200, &t))
                }
                Repr::Metadata => Ok(json_response(200, &crate::table::partial(&obj))),
                Repr::Full => ok(200, &obj),
            }
        }
        ("GET", None) if query.flag("watch") => {
            let repr = crate::table::repr(accept(headers));
            watch::serve(shared.clone(), rt, rp, query, repr).await
        }
        ("GET", None) => list(shared, &rt, &rp, query, crate::table::repr(accept(headers))),
        (_, _) if rt.create_only => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
        ("POST", None) => {
            let opts = write_opts(&rt, &rp, query, headers);
            crate::schema::duplicate_fields(
                &rt,
                &rp.version,
                body,
                opts.field_validation,
                &opts.warnings,
            )?;
            let body: Value = parse_body(body)?;
            let obj = shared.lock()?.create(&rt, &ns, body, &opts)?;
            ok(201, &obj).map(|r| with_warnings(r, &opts))
        }
        ("PUT", Some(name)) => {
            let opts = write_opts(&rt, &rp, query, headers);
            crate::schema::duplicate_fields(
                &rt,
                &rp.version,
                body,
                opts.field_validation,
                &opts.warnings,
            )?;
            let body: Value = parse_body(body)?;
            let obj = shared.lock()?.update(&rt, &ns, name, body, &opts)?;
            ok(200, &obj).map(|r| with_warnings(r, &opts))
        }
        ("PATCH", Some(name)) => {
            let ctype = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let ptype = match ctype.as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => {
                    PatchType::Apply {
                        force: query.flag("force"),
                    }
                }
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                        ),
                    ));
                }
            };
            let opts = write_opts(&rt, &rp, query, headers);
            let mut store = shared.lock()?;
            let existed = store
                .get(&rt.key(), if rt.namespaced { &ns } else { "" }, name)
                .is_some();
            let obj = store.patch(&rt, &ns, name, ptype, body, &opts)?;
            drop(store);
            ok(if existed { 200 } else { 201 }, &obj).map(|r| with_warnings(r, &opts))
        }
        ("DELETE", Some(name)) => {
            let opts = delete_opts(query, body)?;
            let (obj, still_there) = {
                let mut store = shared.lock()?;
                let obj = store.delete(&rt, &ns, name, &opts)?;
                let key_ns = if rt.namespaced { ns.as_str() } else { "" };
                let still = !opts.dry_run && store.get(&rt.key(), key_ns, name).is_some();
                (obj, still)
            };
            // As the real registry: an object whose deletion is pending
            // (finalizers, Foreground, graceful pods) comes back as it is; one
            // deleted at once is answered with a Success Status naming it,
            // except for the kinds whose storage returns the deleted object.
            let returns_object =
                rt.is("", "pods") || rt.is("", "services") || rt.is("", "namespaces");
            if still_there || returns_object {
                return ok(200, &obj);
            }
            let mut details = json!({
                "name": name,
                "kind": rt.plural,
                "uid": crate::util::uid_of(&obj),
            });
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }),
            ))
        }
        ("DELETE", None) => {
            let opts = delete_opts(query, body)?;
            let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
            let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), &rt)?;
            let mut store = shared.lock()?;
            let scope = rp.namespace.as_deref();
            let victims: Vec<_> = store
                .list(&rt.key(), scope)
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            let mut items = Vec::new();
            for v in victims {
                let n = crate::util::name_of(&v).to_string();
                let vns = crate::util::namespace_of(&v).to_string();
                if let Ok(o) = store.delete(&rt, &vns, &n, &opts) {
                    items.push(versioned(&rt, &version, &o));
                }
            }
            let rv = store.current_rv();
            drop(store);
            Ok(json_response(
                200,
                &list_object(&rt, &version, rv, items, None, None),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// `autoscaling/v1` Scale of an object with `spec.replicas`.
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// GET, PUT and PATCH of `/scale`: reads and writes `spec.replicas` only.
fn scale(
    shared: &Arc<Shared>,
    method: &str,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let Some(name) = rp.name.as_deref() else {
        return Err(ApiError::path_not_found());
    };
    let ns = rp.namespace.clone().unwrap_or_default();
    let mut store = shared.lock()?;
    let obj = store
        .get(&rt.key(), &ns, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let current = scale_of(&obj);
    let wanted = match method {
        "GET" => return Ok(json_response(200, &current)),
        "PUT" => {
            let b = parse_body(body)?;
            if let Some(rv) = b
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && !rv.is_empty()
                && Some(rv)
                    != obj
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return Err(ApiError::conflict_modified(rt, name));
            }
            b
        }
        "PATCH" => {
            let patch: Value = parse_body(body)?;
            let mut s = current.clone();
            let ctype = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ctype.starts_with("application/json-patch+json") {
                crate::patch::json_patch(&mut s, &patch)?;
            } else {
                crate::patch::merge_patch(&mut s, &patch);
            }
            s
        }
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
    let mut next = (*obj).clone();
    next["spec"]["replicas"] = json!(replicas);
    let opts = write_opts(rt, rp, query, headers);
    let updated = store.update(rt, &ns, name, next, &opts)?;
    Ok(json_response(200, &scale_of(&updated)))
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    // kubectl and kube send JSON; YAML is accepted too, as the real server does.
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
}

fn delete_opts(query: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(body)?
    };
    let policy = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(query.get("propagationPolicy"))
        .map(|p| match p {
            "Orphan" => Ok(Propagation::Orphan),
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        })
        .transpose()?;
    let policy = match (policy, b.get("orphanDependents").and_then(Value::as_bool)) {
        (Some(p), _) => Some(p),
        (None, Some(true)) => Some(Propagation::Orphan),
        (None, Some(false)) => Some(Propagation::Background),
        (None, None) => None,
    };
    let dry_run = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"))
        || query.get("dryRun") == Some("All");
    Ok(DeleteOpts {
        propagation: policy,
        dry_run,
        grace_period: b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| query.get("gracePeriodSeconds").and_then(|s| s.parse().ok())),
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// A continue token: the resourceVersion of the first page and where to resume.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = format!("{rv}\u{0}{ns}\u{0}{name}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> ApiResult<(u64, String, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: invalid token");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, ()> = token
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
        })
        .collect();
    let raw = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = raw.split('\u{0}');
    let rv = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn list(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    repr: Repr,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), rt)?;
    let limit: Option<usize> = query
        .nonempty("limit")
        .map(|l| {
            l.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))
        })
        .transpose()?
        .filter(|l| *l > 0);
    let after = query
        .nonempty("continue")
        .map(decode_continue)
        .transpose()?;
    let (items, rv) = {
        let store = shared.lock()?;
        if let Some(rv) = query.nonempty("resourceVersion")
            && rv != "0"
            && query.get("resourceVersionMatch") == Some("Exact")
            && rv.parse::<u64>().ok() != Some(store.current_rv())
        {
            // No MVCC: only the latest state can be served exactly.
            return Err(ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", store.current_rv()),
            ));
        }
        if let Some((token_rv, _, _)) = &after
            && *token_rv < store.floor()
        {
            // The history this token's list started at has been compacted.
            return Err(ApiError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        let scope = rp.namespace.as_deref();
        (store.list(&rt.key(), scope), store.current_rv())
    };
    let rv = after.as_ref().map_or(rv, |(rv, _, _)| *rv);
    let mut out: Vec<std::sync::Arc<Value>> = Vec::new();
    let mut remaining = 0usize;
    let mut cont = None;
    for obj in items {
        if let Some((_, ans, aname)) = &after {
            let key = (crate::util::namespace_of(&obj), crate::util::name_of(&obj));
            if key <= (ans.as_str(), aname.as_str()) {
                continue;
            }
        }
        if !(labels.is_empty() || labels.matches(&obj))
            || !(fields.is_empty() || fields.matches(&obj))
        {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            remaining += 1;
            continue;
        }
        out.push(obj);
    }
    if remaining > 0
        && let Some(last) = out.last()
    {
        cont = Some(encode_continue(
            rv,
            crate::util::namespace_of(last),
            crate::util::name_of(last),
        ));
    }
    match repr {
        Repr::Table => {
            let objs: Vec<&Value> = out.iter().map(|o| &**o).collect();
            let mut t = crate::table::table(rt, &objs, Some(rv), cont.as_deref());
            include_objects(&mut t, rt, &rp.version, &objs, query);
            return Ok(json_response(200, &t));
        }
        Repr::Metadata => {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(remaining);
            }
            let items: Vec<Value> = out.iter().map(|o| crate::table::partial(o)).collect();
            let l = json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items,
            });
            return Ok(json_response(200, &l));
        }
        Repr::Full => {}
    }
    // Serialized by hand: items are shared with the store and written as they are.
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(remaining);
    }
    let mut buf = Vec::with_capacity(out.len() * 512 + 256);
    buf.extend_from_slice(b"{\"kind\":");
    buf.extend_from_slice(&serde_json::to_vec(&rt.list_kind).unwrap_or_default());
    buf.extend_from_slice(b",\"apiVersion\":");
    buf.extend_from_slice(&serde_json::to_vec(&rt.api_version(&rp.version)).unwrap_or_default());
    buf.extend_from_slice(b",\"metadata\":");
    buf.extend_from_slice(&serde_json::to_vec(&meta).unwrap_or_default());
    buf.extend_from_slice(b",\"items\":[");
    for (i, obj) in out.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if rt.from_crd {
            let _ = serde_json::to_writer(&mut buf, &versioned(rt, &rp.version, obj));
        } else {
            let _ = serde_json::to_writer(&mut buf, &**obj);
        }
    }
    buf.extend_from_slice(b"]}");
    Ok(bytes_response(200, "application/json", buf))
}

/// `includeObject=Object` (what `kubectl get --sort-by` asks for): the rows
/// carry the whole objects, not their metadata; `None`: no object at all.
fn include_objects(
    t: &mut Value,
    rt: &ResourceType,
    version: &str,
    objs: &[&Value],
    query: &Query,
) {
    let Some(rows) = t.get_mut("rows").and_then(Value::as_array_mut) else {
        return;
    };
    match query.get("includeObject") {
        Some("Object") => {
            for (row, obj) in rows.iter_mut().zip(objs) {
                row["object"] = versioned(rt, version, obj);
            }
        }
        Some("None") => {
            for row in rows.iter_mut() {
                if let Value::Object(r) = row {
                    r.remove("object");
                }
            }
        }
        _ => {}
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

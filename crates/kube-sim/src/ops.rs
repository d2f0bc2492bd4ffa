//! What each write means: create, update, patch, server-side apply and delete
//! with the real server's metadata handling, validation, finalizers and
//! garbage collection of dependents. Used by the HTTP layer and by the
//! simulated controllers alike.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::resources::{ResourceType, type_from_crd};
use crate::status::{ApiError, ApiResult};
use crate::store::Store;
use crate::util::{name_of, namespace_of, now_rfc3339, str_at};
use crate::{ssa, validation};

/// Options every write carries.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    /// The `group/version` the request came in on (managedFields' apiVersion).
    pub api_version: String,
    /// What to do with fields the schema does not declare.
    pub field_validation: crate::schema::FieldValidation,
    /// Where the write's warnings go (`Warning` response headers).
    pub warnings: crate::schema::Warnings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<Propagation>,
    pub dry_run: bool,
    pub grace_period: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

fn strip_for_compare(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        // Ownership counts, the time of the last touch does not.
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries {
                if let Value::Object(e) = e {
                    e.remove("time");
                }
            }
        }
    }
    v
}

/// Kinds whose strategy keeps `metadata.generation` (workloads, CRDs and
/// custom resources); ConfigMaps, Secrets and the like have none.
fn tracks_generation(rt: &ResourceType) -> bool {
    rt.from_crd || matches!(rt.group.as_str(), "apps" | "batch" | "apiextensions.k8s.io")
}

/// Everything but metadata and status: a change here bumps `generation`.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn forbidden_terminating(rt: &ResourceType, name: &str, ns: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            rt.qualified()
        ),
    )
    .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": [{
        "reason": "NamespaceTerminating",
        "message": format!("namespace {ns} is being terminated"),
        "field": "metadata.namespace"
    }]}))
}

impl Store {
    pub fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        creating: bool,
    ) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_type = ("".to_string(), "namespaces".to_string());
        match self.get(&ns_type, "", ns) {
            None => Err(ApiError::not_found_raw("", "namespaces", ns)),
            Some(n) if creating && n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(forbidden_terminating(rt, name, ns))
            }
            Some(_) => Ok(()),
        }
    }

    /// POST: a new object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Arc<Value>> {
        self.create_inner(rt, ns, body, opts, true)
    }

    fn create_inner(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
        record_fields: bool,
    ) -> ApiResult<Arc<Value>> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        check_type_meta(rt, &obj)?;
        let version = match opts.api_version.rsplit('/').next() {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => rt.preferred_version().to_string(),
        };
        let meta = crate::util::ensure_map(&mut obj, &["metadata"]);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    let name = format!("{g}{}", crate::util::random_suffix());
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        vec![crate::status::FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        meta.remove("resourceVersion");
        meta.insert("uid".into(), json!(crate::util::new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if tracks_generation(rt) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        // Server-side apply brings the managedFields it computed; any other
        // create starts without and records its own below.
        if record_fields {
            meta.remove("managedFields");
        }
        if let Value::Object(m) = &mut obj {
            m.insert("apiVersion".into(), json!(rt.api_version(&version)));
            m.insert("kind".into(), json!(rt.kind));
            if rt.has_status && !rt.is("", "namespaces") {
                m.remove("status");
            }
        }
        let name = name_of(&obj).to_string();
        self.check_namespace(rt, ns, &name, true)?;
        let obj_ns = if rt.namespaced { ns } else { "" };
        if self.get(&rt.key(), obj_ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let ip = if rt.is("", "services") && obj.pointer("/spec/clusterIP").is_none() {
            Some(self.allocate_ip())
        } else {
            None
        };
        validation::apply_defaults(rt, &mut obj, None, || ip.unwrap_or_default());
        if rt.is("", "pods") {
            let status = crate::util::ensure_map(&mut obj, &["status"]);
            status.entry("phase").or_insert(json!("Pending"));
            status.entry("qosClass").or_insert(json!("BestEffort"));
        }
        self.check_schema(rt, &mut obj, opts)?;
        validation::validate(rt, &obj)?;
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            crd_accept(&mut obj);
        }
        if record_fields {
            ssa::record_update(None, &mut obj, &opts.manager, &rt.api_version(&version), "");
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            self.register_crd(&obj)?;
        }
        Ok(self.put(rt, obj))
    }

    /// PUT: replaces an object, with the optimistic-concurrency check.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Arc<Value>> {
        let ns = if rt.namespaced { ns } else { "" };
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        check_type_meta(rt, &body)?;
        let body_name = name_of(&body);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let Some(old) = self.get(&rt.key(), ns, name) else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(rv) = str_at(&body, "/metadata/resourceVersion").filter(|s| !s.is_empty())
            && Some(rv) != str_at(&old, "/metadata/resourceVersion")
        {
            return Err(ApiError::conflict_modified(rt, name));
        }
        self.commit_update(rt, &old, body, opts, true)
    }

    /// The shared tail of every update: identity kept, status or spec kept
    /// depending on the subresource, defaults, validation, generation.
    fn commit_update(
        &mut self,
        rt: &ResourceType,
        old: &Arc<Value>,
        mut new: Value,
        opts: &WriteOpts,
        mut record_fields: bool,
    ) -> ApiResult<Arc<Value>> {
        let name = name_of(old).to_string();
        let ns = namespace_of(old).to_string();
        if opts.subresource == "status" {
            let status = new.get("status").cloned();
            let applied_fields = new.pointer("/metadata/managedFields").cloned();
            new = (**old).clone();
            if !record_fields && let Some(mf) = applied_fields {
                new["metadata"]["managedFields"] = mf;
            }
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        } else if rt.has_status
            && let Value::Object(m) = &mut new
        {
            match old.get("status") {
                Some(s) => {
                    m.insert("status".into(), s.clone());
                }
                None => {
                    m.remove("status");
                }
            }
        }
        {
            let meta = crate::util::ensure_map(&mut new, &["metadata"]);
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            // Server-side apply brings its own managedFields; a write that
            // sets them explicitly (kubectl's client-side-apply migration)
            // is taken as it is; other writes start from the stored ones and
            // record their change below.
            let explicit = meta
                .get("managedFields")
                .is_some_and(|mf| Some(mf) != old_meta.get("managedFields"));
            if explicit {
                record_fields = false;
                if meta
                    .get("managedFields")
                    .is_some_and(|mf| mf.as_array().is_some_and(Vec::is_empty))
                {
                    meta.remove("managedFields");
                }
            } else if record_fields {
                match old_meta.get("managedFields") {
                    Some(mf) => {
                        meta.insert("managedFields".into(), mf.clone());
                    }
                    None => {
                        meta.remove("managedFields");
                    }
                }
            }
        }
        if let Value::Object(m) = &mut new {
            m.insert(
                "apiVersion".into(),
                old.get("apiVersion").cloned().unwrap_or(Value::Null),
            );
            m.insert("kind".into(), json!(rt.kind));
        }
        validation::apply_defaults(rt, &mut new, Some(old), String::new);
        self.check_schema(rt, &mut new, opts)?;
        validation::validate(rt, &new)?;
        validation::validate_update(rt, old, &new)?;
        if tracks_generation(rt) && spec_part(old) != spec_part(&new) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            crd_accept(&mut new);
        }
        if record_fields {
            ssa::record_update(
                Some(old),
                &mut new,
                &opts.manager,
                &opts.api_version,
                &opts.subresource,
            );
        }
        if strip_for_compare(old) == strip_for_compare(&new) {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(old.clone());
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty
            && !rt.is("", "pods")
            && !rt.is("", "namespaces")
        {
            self.put(rt, new);
            return self
                .finish_delete(rt, &ns, &name)
                .ok_or_else(|| ApiError::not_found(rt, &name));
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            self.register_crd(&new)?;
        }
        Ok(self.put(rt, new))
    }

    /// PATCH of any type; apply creates the object when it is absent.
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        opts: &WriteOpts,
    ) -> ApiResult<Arc<Value>> {
        let ns = if rt.namespaced { ns } else { "" };
        let old = self.get(&rt.key(), ns, name);
        if let PatchType::Apply { force } = ptype {
            let applied: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            check_type_meta(rt, &applied)?;
            let applied_name = name_of(&applied);
            if !applied_name.is_empty() && applied_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                )));
            }
            if opts.manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires a non-empty fieldManager",
                ));
            }
            return match old {
                None => {
                    if opts.subresource == "status" {
                        return Err(ApiError::not_found(rt, name));
                    }
                    let mut merged =
                        ssa::apply(None, &applied, &opts.manager, &opts.api_version, force, "")?;
                    merged["metadata"]["name"] = json!(name);
                    self.create_inner(rt, ns, merged, opts, false)
                }
                Some(old) => {
                    let merged = ssa::apply(
                        Some(&old),
                        &applied,
                        &opts.manager,
                        &opts.api_version,
                        force,
                        &opts.subresource,
                    )?;
                    self.commit_update(rt, &old, merged, opts, false)
                }
            };
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(rt, name));
        };
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let mut new = (*old).clone();
        match ptype {
            PatchType::Merge => crate::patch::merge_patch(&mut new, &patch),
            PatchType::Json => crate::patch::json_patch(&mut new, &patch)?,
            PatchType::Strategic => {
                if rt.from_crd {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                crate::patch::strategic_merge(&mut new, &patch)?
            }
            PatchType::Apply { .. } => unreachable!("handled above"),
        }
        // A patch may not turn the object into something the types cannot hold.
        check_type_meta(rt, &new)?;
        if let Some(rv) = str_at(&patch, "/metadata/resourceVersion").filter(|s| !s.is_empty())
            && Some(rv) != str_at(&old, "/metadata/resourceVersion")
        {
            return Err(ApiError::conflict_modified(rt, name));
        }
        self.commit_update(rt, &old, new, opts, true)
    }

    /// DELETE with DeleteOptions: finalizers, propagation, graceful pods.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Arc<Value>> {
        let ns = if rt.namespaced { ns } else { "" };
        let Some(obj) = self.get(&rt.key(), ns, name) else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(uid) = &opts.precondition_uid
            && uid != crate::util::uid_of(&obj)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.qualified(),
                    crate::util::uid_of(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && Some(rv.as_str()) != str_at(&obj, "/metadata/resourceVersion")
        {
            return Err(ApiError::conflict_modified(rt, name));
        }
        if opts.dry_run {
            return Ok(obj);
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() && !rt.is("", "pods") {
            // Already being deleted: a second delete changes nothing,
            // except that Foreground still waits on the dependents.
            return Ok(obj);
        }
        let policy =
            opts.propagation
                .unwrap_or(if rt.is("batch", "jobs") || rt.is("batch", "cronjobs") {
                    // batch/v1 keeps its historical default: Jobs orphan their pods.
                    Propagation::Orphan
                } else {
                    Propagation::Background
                });
        let uid = crate::util::uid_of(&obj).to_string();
        let mut next = (*obj).clone();
        let mut finalizers: Vec<Value> = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();

        if rt.is("", "namespaces") {
            next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            next["status"] = json!({"phase": "Terminating"});
            let stored = self.put(rt, next);
            for (key, obj_name) in self.in_namespace(name) {
                if let Some(t) = self.registry.get(&key.0, &key.1).cloned() {
                    let _ = self.delete(
                        &t,
                        name,
                        &obj_name,
                        &DeleteOpts {
                            propagation: Some(Propagation::Background),
                            grace_period: Some(0),
                            ..Default::default()
                        },
                    );
                }
            }
            return Ok(stored);
        }

        if policy == Propagation::Orphan {
            self.orphan_dependents(&uid, ns);
        }
        let graceful_pod = rt.is("", "pods")
            && opts.grace_period != Some(0)
            && !self.pod_termination.is_zero()
            && !matches!(
                str_at(&obj, "/status/phase"),
                Some("Succeeded") | Some("Failed")
            );
        if policy == Propagation::Foreground && !self.dependents(&uid, ns).is_empty() {
            let f = json!("foregroundDeletion");
            if !finalizers.contains(&f) {
                finalizers.push(f);
            }
        }
        if finalizers.is_empty() && !graceful_pod {
            return self
                .finish_delete(rt, ns, name)
                .ok_or_else(|| ApiError::not_found(rt, name));
        }
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(if graceful_pod {
                opts.grace_period.unwrap_or(30)
            } else {
                0
            });
        }
        if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            if finalizers.is_empty() {
                meta.remove("finalizers");
            } else {
                meta.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        let stored = self.put(rt, next);
        // Foreground deletes the dependents first; Background collects them
        // once the owner is really gone (see finish_delete).
        if policy == Propagation::Foreground {
            self.delete_dependents(&uid, ns);
        }
        Ok(stored)
    }

    /// Removes the object for good and cleans up what hangs on it.
    fn finish_delete(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Value>> {
        let gone = self.remove(rt, ns, name)?;
        // The garbage collector's part: whatever the owner left behind
        // (nothing after Orphan, which unlinked the dependents first).
        self.delete_dependents(crate::util::uid_of(&gone), ns);
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions")
            && let Some(t) = type_from_crd(&gone)
            && let Some(served) = self.registry.get(&t.group, &t.plural).cloned()
            && served.from_crd
        {
            self.drop_resource(&served);
            self.registry.remove(&served.key());
        }
        Some(gone)
    }

    pub fn delete_dependents(&mut self, owner_uid: &str, owner_ns: &str) {
        for (key, ns, name) in self.dependents(owner_uid, owner_ns) {
            if let Some(t) = self.registry.get(&key.0, &key.1).cloned() {
                let _ = self.delete(
                    &t,
                    &ns,
                    &name,
                    &DeleteOpts {
                        propagation: Some(Propagation::Background),
                        ..Default::default()
                    },
                );
            }
        }
    }

    fn orphan_dependents(&mut self, owner_uid: &str, owner_ns: &str) {
        for (key, ns, name) in self.dependents(owner_uid, owner_ns) {
            let (Some(t), Some(obj)) = (
                self.registry.get(&key.0, &key.1).cloned(),
                self.get(&key, &ns, &name),
            ) else {
                continue;
            };
            let mut next = (*obj).clone();
            if let Some(Value::Array(refs)) = next.pointer_mut("/metadata/ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            self.put(&t, next);
        }
    }

    /// One pass of the garbage collector: graceful pods whose time is up,
    /// Foreground owners whose dependents are gone, emptied namespaces.
    pub fn collect_garbage(&mut self) {
        let pending: Vec<_> = self
            .terminating
            .iter()
            .map(|(k, since)| (k.clone(), *since))
            .collect();
        for ((key, (ns, name)), since) in pending {
            let (Some(rt), Some(obj)) = (
                self.registry.get(&key.0, &key.1).cloned(),
                self.get(&key, &ns, &name),
            ) else {
                self.terminating.remove(&(key, (ns, name)));
                continue;
            };
            let uid = crate::util::uid_of(&obj).to_string();
            let mut finalizers: Vec<Value> = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if rt.is("", "namespaces") {
                if self.in_namespace(&name).is_empty() {
                    self.finish_delete(&rt, "", &name);
                }
                continue;
            }
            let fg = json!("foregroundDeletion");
            if finalizers.contains(&fg) && self.dependents(&uid, &ns).is_empty() {
                finalizers.retain(|f| *f != fg);
                let mut next = (*obj).clone();
                next["metadata"]["finalizers"] = Value::Array(finalizers.clone());
                if !finalizers.is_empty() {
                    self.put(&rt, next);
                    continue;
                }
            }
            if !finalizers.is_empty() {
                continue;
            }
            if rt.is("", "pods") && since.elapsed() < self.pod_termination {
                continue;
            }
            self.finish_delete(&rt, &ns, &name);
        }
    }

    fn register_crd(&mut self, crd: &Value) -> ApiResult<()> {
        let Some(t) = type_from_crd(crd) else {
            return Ok(());
        };
        if let Some(existing) = self.registry.get(&t.group, &t.plural)
            && !existing.from_crd
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("{} is served by the API server itself", t.qualified()),
            ));
        }
        self.registry.insert(t);
        Ok(())
    }
}

/// The real server accepts the names and marks the CRD Established.
fn crd_accept(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let versions: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let now = now_rfc3339();
    let mut accepted = names.clone();
    if let Value::Object(m) = &mut accepted {
        m.entry("singular").or_insert_with(|| {
            json!(
                names
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase()
            )
        });
        m.entry("listKind").or_insert_with(|| {
            json!(format!(
                "{}List",
                names.get("kind").and_then(Value::as_str).unwrap_or("")
            ))
        });
    }
    crd["status"] = json!({
        "acceptedNames": accepted,
        "storedVersions": versions,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ]
    });
}

/// `apiVersion`/`kind` in a body must name the resource of the URL.
/// The shape of `metadata` the Go types would decode, or the 400 they give.
fn check_metadata_shape(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let bad = |field: &str, expected: &str| {
        Err(ApiError::bad_request(format!(
            "{} in body must be of type {expected}: metadata.{field}",
            rt.kind
        )))
    };
    let Some(meta) = obj.get("metadata") else {
        return Ok(());
    };
    let Some(meta) = meta.as_object() else {
        return Err(ApiError::bad_request(format!(
            "{} in body must be of type object: metadata",
            rt.kind
        )));
    };
    for f in [
        "name",
        "namespace",
        "generateName",
        "resourceVersion",
        "uid",
    ] {
        if meta.get(f).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return bad(f, "string");
        }
    }
    for f in ["labels", "annotations"] {
        match meta.get(f) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(|v| v.is_string() || v.is_null()) => {}
            Some(_) => return bad(f, "map of strings"),
        }
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => return bad("finalizers", "array of strings"),
    }
    match meta.get("ownerReferences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_object) => {}
        Some(_) => return bad("ownerReferences", "array of objects"),
    }
    Ok(())
}

fn check_type_meta(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    check_metadata_shape(rt, obj)?;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
    {
        let (group, version) = match av.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", av),
        };
        if group != rt.group || !rt.versions.iter().any(|v| v == version) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version(rt.preferred_version())
            )));
        }
    }
    Ok(())
}

/// A List object of items, as LIST and deletecollection answer.
pub fn list_object(
    rt: &ResourceType,
    version: &str,
    rv: u64,
    items: Vec<Value>,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if let Some(c) = cont {
        meta.insert("continue".into(), json!(c));
    }
    if let Some(r) = remaining {
        meta.insert("remainingItemCount".into(), json!(r));
    }
    json!({
        "kind": rt.list_kind,
        "apiVersion": rt.api_version(version),
        "metadata": meta,
        "items": items,
    })
}

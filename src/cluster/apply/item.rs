//! One object of a stage on its way to the cluster: the rendered manifest,
//! placed in its namespace, with the API resource it is served by.

use kube::Api;
use kube::Client;
use kube::api::DynamicObject;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::resolve::Resolved;
use crate::cluster::state::InventoryEntry;
use crate::core::hooks::{Hook, HookKind, HookPhase};
use crate::core::object::{ObjectRef, SpecHash};
use crate::core::plan::PlannedObject;

/// What an object is on this apply of its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An ordinary object, applied in kind order.
    Main,
    /// A hook that runs in this phase.
    Hook(HookPhase),
    /// A hook that does not run on this apply (`pre-install` on an upgrade),
    /// or one annotated only with hook kinds stagegate cannot honour.
    Idle,
}

/// Application order inside a stage: Namespaces and CRDs first (what other
/// objects need to exist), then cluster-scoped objects, then namespaced
/// ones, Jobs last (they run against everything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    Foundation,
    ClusterScoped,
    Namespaced,
    Job,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub value: Value,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub resolved: Option<Resolved>,
    /// Hash of the rendered object as it will be applied.
    pub hash: String,
    /// Its hook, as the plan parsed it (see [`crate::core::hooks`]).
    pub hook: Option<Hook>,
    pub role: Role,
    /// A Job's spec hash; `Some` exactly for Jobs.
    pub job: Option<SpecHash>,
}

impl Item {
    pub fn new(value: Value) -> Self {
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let api_version = text("apiVersion");
        let kind = text("kind");
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        Self {
            value,
            api_version,
            kind,
            name,
            namespace,
            resolved: None,
            hash: String::new(),
            hook: None,
            role: Role::Main,
            job: None,
        }
    }

    /// An object of the plan, with the hook and spec hash the plan read.
    pub fn planned(object: &PlannedObject) -> Self {
        let mut item = Self::new(object.value.clone());
        match &object.hook {
            HookKind::NotAHook => {}
            HookKind::Hook(hook) => item.hook = Some(hook.clone()),
            HookKind::Unsupported => item.role = Role::Idle,
        }
        item.job = object.job.clone();
        item
    }

    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
    }

    pub fn is_job(&self) -> bool {
        self.kind == "Job" && self.group() == "batch"
    }

    pub fn is_crd(&self) -> bool {
        self.kind == "CustomResourceDefinition" && self.group() == "apiextensions.k8s.io"
    }

    pub fn rank(&self) -> Rank {
        if self.is_crd() || (self.kind == "Namespace" && self.group().is_empty()) {
            Rank::Foundation
        } else if self.is_job() {
            Rank::Job
        } else if self.resolved.as_ref().is_some_and(|r| !r.namespaced) {
            Rank::ClusterScoped
        } else {
            Rank::Namespaced
        }
    }

    /// Set the resource and place the object: namespaced objects without a
    /// namespace go to `default_namespace`; cluster-scoped ones lose any.
    pub fn place(&mut self, resolved: Resolved, default_namespace: &str) {
        if resolved.namespaced {
            let ns = self
                .namespace
                .get_or_insert_with(|| default_namespace.to_string())
                .clone();
            if let Some(meta) = self
                .value
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                meta.insert("namespace".into(), Value::String(ns));
            }
        } else {
            self.namespace = None;
            if let Some(meta) = self
                .value
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                meta.remove("namespace");
            }
        }
        self.resolved = Some(resolved);
        self.hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&self.value).unwrap_or_default(),
        ));
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group().to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn api(&self, client: &Client) -> Option<Api<DynamicObject>> {
        let resolved = self.resolved.as_ref()?;
        Some(match &self.namespace {
            Some(ns) if resolved.namespaced => {
                Api::namespaced_with(client.clone(), ns, &resolved.resource)
            }
            _ => Api::all_with(client.clone(), &resolved.resource),
        })
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .pointer("/metadata/annotations")?
            .get(key)?
            .as_str()
    }

    pub fn inventory_entry(&self, resource_version: String) -> InventoryEntry {
        InventoryEntry {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            hash: self.hash.clone(),
            resource_version,
        }
    }
}

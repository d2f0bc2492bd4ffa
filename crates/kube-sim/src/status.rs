//! Errors answered the way the real API server answers them: a `Status` object
//! with `kind: Status`, `status: Failure`, a reason, details and the HTTP code.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// One failed API request, ready to be sent as a `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `jobs.batch "pi" not found` with details naming the resource (`kind: jobs`).
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::not_found_raw(&rt.group, &rt.plural, name)
    }

    pub fn not_found_raw(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(details(group, plural, name))
    }

    /// The plain 404 for a path that names no resource at all.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(details(&rt.group, &rt.plural, name))
    }

    /// The optimistic-concurrency conflict of a PUT with a stale resourceVersion.
    pub fn conflict_modified(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(details(&rt.group, &rt.plural, name))
    }

    /// 422 with one cause per field error, message built as the real server does:
    /// `Job.batch "pi" is invalid: spec.template: Invalid value: ...: field is immutable`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<FieldError>) -> Self {
        let kind_group = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let rendered: Vec<String> = causes.iter().map(FieldError::render).collect();
        let message = if rendered.len() == 1 {
            format!("{kind_group} \"{name}\" is invalid: {}", rendered[0])
        } else {
            format!(
                "{kind_group} \"{name}\" is invalid: [{}]",
                rendered.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| {
                json!({
                    "reason": c.cause_type(),
                    "message": c.cause_message(),
                    "field": c.field,
                })
            })
            .collect();
        let mut d = json!({ "name": name, "kind": rt.kind, "causes": causes });
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        Self::new(422, "Invalid", message).with_details(d)
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

/// `jobs.batch` or `configmaps` (core group).
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": plural });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// One field error of a 422, in the shape of apimachinery's `field.Error`.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub detail: String,
    /// Go-syntax rendering of the bad value, as the real message prints it.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Forbidden,
    Unsupported,
    TooLong,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Required,
            field: field.into(),
            detail: detail.into(),
            value: None,
        }
    }

    pub fn invalid(field: impl Into<String>, value: impl Into<String>, detail: &str) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            detail: detail.to_string(),
            value: Some(value.into()),
        }
    }

    /// `Too long: may not be more than N bytes`, as Kubernetes 1.32 words it.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            detail: format!("may not be more than {max} bytes"),
            value: None,
        }
    }

    pub fn immutable(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::invalid(field, value, "field is immutable")
    }

    fn cause_type(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Unsupported => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
        }
    }

    fn type_text(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::Unsupported => "Unsupported value",
            FieldErrorKind::TooLong => "Too long",
        }
    }

    fn cause_message(&self) -> String {
        match &self.value {
            Some(v) => format!("{}: {v}: {}", self.type_text(), self.detail),
            None if self.detail.is_empty() => self.type_text().to_string(),
            None => format!("{}: {}", self.type_text(), self.detail),
        }
    }

    fn render(&self) -> String {
        format!("{}: {}", self.field, self.cause_message())
    }
}

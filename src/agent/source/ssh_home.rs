//! Makes libssh2 ask the server for a host key type that known_hosts lists.
//!
//! An SSH server usually has several host keys (ed25519, ECDSA, RSA) and the
//! client says which types it prefers. libgit2 builds that preference from
//! `~/.ssh/known_hosts`; without the file libssh2 uses its own order, so a
//! known_hosts that lists only the server's RSA key would fail verification
//! although OpenSSH connects with it. libgit2 finds "home" through a
//! process-wide setting, so for the length of an SSH fetch it points at a
//! directory holding a copy of the configured known_hosts. Verification itself
//! never reads that copy: it is done against the configured file in the
//! `certificate_check` callback.
//!
//! The setting is global and libgit2 reads it without locking, so every git2
//! operation of this module runs under [`lock`]: fetches of several sources in
//! one process take turns.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::error::SourceError;

static GIT2: Mutex<()> = Mutex::new(());

/// Held for the whole of any git2 operation in this module.
pub(crate) fn lock() -> MutexGuard<'static, ()> {
    // A panic in another fetch leaves nothing half-set that matters here: the
    // home directory is reset by `SshHome`'s drop during unwinding.
    GIT2.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// While alive, libgit2's home directory is `dir`, whose `.ssh/known_hosts`
/// is a copy of the configured one. Must be created under [`lock`].
pub(crate) struct SshHome(());

impl SshHome {
    pub(crate) fn enter(
        _held: &MutexGuard<'static, ()>,
        dir: &Path,
        known_hosts: &Path,
    ) -> Result<Self, SourceError> {
        let ssh_dir = dir.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).map_err(|e| SourceError::io("create", &ssh_dir, e))?;
        let copy = ssh_dir.join("known_hosts");
        std::fs::copy(known_hosts, &copy).map_err(|e| SourceError::KnownHosts {
            path: known_hosts.to_path_buf(),
            reason: super::known_hosts::KnownHostsError::Copy {
                to: copy.clone(),
                error: e,
            },
        })?;
        set_home(Some(dir))?;
        Ok(Self(()))
    }
}

impl Drop for SshHome {
    fn drop(&mut self) {
        if let Err(error) = set_home(None) {
            tracing::warn!(%error, "cannot reset libgit2's home directory");
        }
    }
}

/// Sets libgit2's home directory, or back to its default (`$HOME`) on `None`.
fn set_home(dir: Option<&Path>) -> Result<(), SourceError> {
    let failed = |message: String| SourceError::Git {
        operation: "configure",
        url: "libgit2".into(),
        message,
    };
    let path = dir
        .map(|d| CString::new(d.as_os_str().as_bytes()))
        .transpose()
        .map_err(|_| failed("the cache path contains a NUL byte".to_string()))?;
    libgit2_sys::init();
    // SAFETY: GIT_OPT_SET_HOMEDIR takes one `const char *` (NULL resets it);
    // libgit2 copies the string. Callers hold `lock`, so no other git2 call
    // of this process reads the setting meanwhile.
    let rc = unsafe {
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_SET_HOMEDIR as std::ffi::c_int,
            path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
        )
    };
    if rc < 0 {
        return Err(failed(git2::Error::last_error(rc).message().to_string()));
    }
    Ok(())
}

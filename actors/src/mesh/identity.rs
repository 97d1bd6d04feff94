//! Persistent node identity: an ed25519 keypair in a key file.
//!
//! A member *is* its peer id (admission lists and vote signatures name it), so the key must
//! survive restarts and must never be replaced behind the operator's back.

use std::{
    fs,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

use super::error::IdentityError;

/// Upper bound on the key file size: a protobuf ed25519 keypair is 68 bytes; anything much
/// larger is not ours and is not read into memory.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Loads the ed25519 keypair stored at `path`, or creates one there if the file does not exist.
///
/// The file holds libp2p's protobuf encoding of the keypair and is created with mode `0600`
/// (written to a temporary file and renamed, so a crash never leaves a half-written key).
/// An existing file that cannot be decoded, holds a non-ed25519 key, or (on Unix) is
/// readable by group or others is refused with an error and left untouched.
pub fn load_or_create_keypair(path: impl AsRef<Path>) -> Result<Keypair, IdentityError> {
    let path = path.as_ref();
    match fs::metadata(path) {
        Ok(meta) => {
            check_permissions(path, &meta)?;
            load(path, meta.len())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => create(path),
        Err(source) => Err(io_err(path, source)),
    }
}

fn load(path: &Path, len: u64) -> Result<Keypair, IdentityError> {
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if len > MAX_KEY_FILE_LEN {
        return Err(corrupt(format!("{len} bytes is too large for a key")));
    }
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let keypair = Keypair::from_protobuf_encoding(&bytes)
        .map_err(|e| corrupt(format!("not a protobuf keypair: {e}")))?;
    if keypair.key_type() != libp2p::identity::KeyType::Ed25519 {
        return Err(corrupt(format!(
            "{:?} key, expected Ed25519",
            keypair.key_type()
        )));
    }
    Ok(keypair)
}

fn create(path: &Path) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::generate_ed25519();
    let encoded = keypair
        .to_protobuf_encoding()
        .expect("ed25519 keypairs always encode");
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = open_private(&tmp)?;
        file.write_all(&encoded)?;
        file.sync_all()?;
        // `hard_link` fails if `path` appeared meanwhile, so two nodes racing on one key
        // file cannot end up with different identities: the loser reports an error.
        fs::hard_link(&tmp, path)?;
        Ok(())
    };
    let result = write();
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(keypair),
        Err(e) => Err(io_err(path, e)),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path, _: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

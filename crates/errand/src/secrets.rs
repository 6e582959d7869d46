//! The secrets of a deployment: the HS256 token secrets and the seal keys of task contexts.
//!
//! Each comes from its environment variable, else the config file, else a file in the data
//! directory. `errand serve` generates the files on first start (mode 0600), so `errand token`
//! and `errand worker` given the same `--data-dir` share them without any setup. Processes on
//! other machines get the same values through the environment or the config file.

use crate::settings::{Settings, split_list};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use errand_core::{SealKey, SealKeyRing};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the generated token secret in the data directory.
pub const JWT_SECRET_FILE: &str = "jwt.secret";
/// File name of the generated seal key in the data directory.
pub const SEAL_KEY_FILE: &str = "seal.key";

/// Whether a missing secret file may be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Generate it (`serve`).
    Generate,
    /// Fail with instructions (`token`, `worker`, `check`).
    Fail,
}

/// The HS256 token secrets, the first of which signs: `ERRAND_JWT_SECRETS` (comma-separated)
/// or `ERRAND_JWT_SECRET` (one), else `jwt_secrets` or `jwt_secret` in the file, else
/// `<data_dir>/jwt.secret`. Setting both forms in one place is an error.
pub fn jwt_secrets(settings: &Settings, missing: Missing) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = |secrets: Vec<String>| secrets.into_iter().map(String::into_bytes).collect();
    match (
        std::env::var("ERRAND_JWT_SECRETS").ok(),
        std::env::var("ERRAND_JWT_SECRET").ok(),
    ) {
        (Some(_), Some(_)) => {
            bail!("both ERRAND_JWT_SECRETS and ERRAND_JWT_SECRET are set: set only one")
        }
        (Some(list), None) => return Ok(bytes(split_list(&list))),
        (None, Some(one)) => return Ok(vec![one.into_bytes()]),
        (None, None) => {}
    }
    match (&settings.file.jwt_secrets, &settings.file.jwt_secret) {
        (Some(_), Some(_)) => {
            bail!("the config file sets both jwt_secrets and jwt_secret: keep only one")
        }
        (Some(list), None) => return Ok(bytes(list.expose().items())),
        (None, Some(one)) => return Ok(vec![one.expose().as_bytes().to_vec()]),
        (None, None) => {}
    }
    let path = settings.data_dir().join(JWT_SECRET_FILE);
    let text = read_or_generate(&path, missing, "ERRAND_JWT_SECRETS", || {
        let bytes: [u8; 48] = rand::random();
        B64.encode(bytes)
    })?;
    Ok(vec![text.into_bytes()])
}

/// The seal key ring: `ERRAND_SEAL_KEYS` (comma-separated base64 keys, the first seals), else
/// `ERRAND_SEAL_KEY` (a ring of one), else `seal_keys` or `seal_key` in the config file, else
/// `<data_dir>/seal.key` (one key, or a comma-separated list).
pub fn seal_keys(settings: &Settings, missing: Missing) -> anyhow::Result<SealKeyRing> {
    let parse = |text: &str, from: &str| {
        SealKeyRing::from_base64_list(text).with_context(|| format!("invalid seal keys in {from}"))
    };
    for var in ["ERRAND_SEAL_KEYS", "ERRAND_SEAL_KEY"] {
        if let Ok(v) = std::env::var(var) {
            return parse(&v, var);
        }
    }
    if let Some(v) = &settings.file.seal_keys {
        return parse(v.expose(), "seal_keys in the config file");
    }
    if let Some(v) = &settings.file.seal_key {
        return parse(v.expose(), "seal_key in the config file");
    }
    let path = settings.data_dir().join(SEAL_KEY_FILE);
    let text = read_or_generate(&path, missing, "ERRAND_SEAL_KEYS", || {
        SealKey::generate().to_base64()
    })?;
    parse(&text, &path.display().to_string())
}

fn read_or_generate(
    path: &Path,
    missing: Missing,
    env: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
        Err(_) => {}
    }
    if missing == Missing::Fail {
        bail!(
            "{} does not exist: run `errand serve` once with the same --data-dir to generate it, or set {env}",
            path.display()
        );
    }
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    errand_sqlite::private::private_dir(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    // Written whole to a private temporary file, then linked into place: a process that
    // races us never reads a half-written secret, and the first one linked wins.
    let value = generate();
    let temporary = dir.join(format!(
        ".{}.{}-{:08x}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut f| {
        f.write_all(value.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new secret (mode 0600)");
            Ok(value)
        }
        // Another process generated it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_string())
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{FileConfig, GlobalArgs};

    fn settings(dir: &Path) -> Settings {
        Settings {
            file: FileConfig::default(),
            global: GlobalArgs {
                config: None,
                data_dir: Some(dir.to_path_buf()),
                log_format: None,
                log: None,
            },
        }
    }

    #[test]
    fn generated_once_then_shared_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path());
        assert!(
            seal_keys(&s, Missing::Fail).is_err(),
            "not generated on demand"
        );
        let key = seal_keys(&s, Missing::Generate).expect("generated");
        let again = seal_keys(&s, Missing::Fail).expect("read back");
        assert_eq!(key.ids(), again.ids());
        assert_eq!(key.ids().len(), 1);
        let secrets = jwt_secrets(&s, Missing::Generate).expect("generated");
        assert!(secrets.len() == 1 && secrets[0].len() >= 32);
        assert_eq!(jwt_secrets(&s, Missing::Fail).expect("read back"), secrets);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(JWT_SECRET_FILE))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn processes_racing_to_generate_agree_on_one_whole_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    seal_keys(&settings(&path), Missing::Generate).map(|k| k.sealing().to_base64())
                })
            })
            .collect();
        let keys: Vec<String> = racers
            .into_iter()
            .map(|r| r.join().expect("no panic").expect("a whole key"))
            .collect();
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "everyone uses the same key"
        );
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn the_file_lists_secrets_first_signing_and_refuses_both_forms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(dir.path());
        s.file = toml::from_str("jwt_secrets = \"new-secret, old-secret\"").expect("toml");
        assert_eq!(
            jwt_secrets(&s, Missing::Fail).expect("from the file"),
            [b"new-secret".to_vec(), b"old-secret".to_vec()]
        );
        s.file = toml::from_str("jwt_secret = \"only,one\"").expect("toml");
        assert_eq!(
            jwt_secrets(&s, Missing::Fail).expect("one, commas and all"),
            [b"only,one".to_vec()]
        );
        s.file = toml::from_str("jwt_secret = \"a\"\njwt_secrets = [\"b\"]").expect("toml");
        let err = jwt_secrets(&s, Missing::Fail).expect_err("both");
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn a_missing_secret_says_how_to_get_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = jwt_secrets(&settings(dir.path()), Missing::Fail).expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.contains("errand serve") && msg.contains("ERRAND_JWT_SECRETS"),
            "{msg}"
        );
    }
}

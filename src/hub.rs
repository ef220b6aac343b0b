//! Model references: a local folder, or a Hugging Face hub id resolved through hf-hub.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// The files of a model folder.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// How to resolve a hub id.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Never touch the network; use only the local cache. Also switched on by the
    /// `HF_HUB_OFFLINE=1` environment variable, as in the Python libraries.
    pub offline: bool,
    /// Revision (branch, tag or commit) when the reference does not carry `@revision`;
    /// `main` by default.
    pub revision: Option<String>,
    /// Hub cache folder; by default `HF_HUB_CACHE`, else `HF_HOME/hub`,
    /// else `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
}

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder on disk.
    Folder(PathBuf),
    /// A hub repository at a revision.
    Hub {
        /// `org/name`.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
    },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Folder(dir) => write!(f, "{}", dir.display()),
            ModelSource::Hub { repo, revision } => write!(f, "{repo}@{revision}"),
        }
    }
}

/// A reference resolved to a folder holding [`MODEL_FILES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Where the reference pointed.
    pub source: ModelSource,
    /// The folder that holds the files (a snapshot folder for hub models).
    pub dir: PathBuf,
}

/// Parses `org/name[@revision]`; `None` when `reference` is not shaped like a hub id.
fn parse_hub_id(reference: &str) -> Option<(&str, Option<&str>)> {
    let (id, revision) = match reference.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, Some(rev)),
        Some(_) => return None,
        None => (reference, None),
    };
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = id.split('/').collect();
    (parts.len() <= 2 && parts.iter().all(|p| valid(p))).then_some((id, revision))
}

fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    Cache::from_env().path().clone()
}

fn env_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Resolves `reference` to a folder.
///
/// An existing folder wins; otherwise `org/name[@revision]` is looked up in the hub cache
/// and, unless offline, downloaded through hf-hub.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::hub::{resolve, ModelSource, ResolveOptions};
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
/// let resolved = resolve(dir.to_str().unwrap(), &ResolveOptions::default())?;
/// assert_eq!(resolved.source, ModelSource::Folder(dir.clone()));
/// # Ok(()) }
/// ```
pub fn resolve(reference: &str, options: &ResolveOptions) -> Result<ResolvedModel> {
    let as_path = Path::new(reference);
    if as_path.is_dir() {
        return Ok(ResolvedModel {
            source: ModelSource::Folder(as_path.to_path_buf()),
            dir: as_path.to_path_buf(),
        });
    }
    let Some((repo, inline_revision)) = parse_hub_id(reference) else {
        return Err(Error::Resolve {
            reference: reference.to_string(),
            reason: "no such folder, and not a hub id of the form org/name[@revision]".into(),
        });
    };
    let revision = inline_revision
        .map(str::to_string)
        .or_else(|| options.revision.clone())
        .unwrap_or_else(|| "main".to_string());
    let cache_dir = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let offline = options.offline || env_offline();
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.clone());

    let mut dir = None;
    for file in MODEL_FILES {
        let path = match cached(&cache_dir, &hub_repo, file) {
            Some(path) => path,
            None if offline => {
                return Err(Error::Resolve {
                    reference: reference.to_string(),
                    reason: format!(
                        "{file} of {repo}@{revision} is not in the hub cache {} and offline mode is on",
                        cache_dir.display()
                    ),
                });
            }
            None => download(&cache_dir, &hub_repo, file).map_err(|reason| Error::Resolve {
                reference: reference.to_string(),
                reason,
            })?,
        };
        let parent = path.parent().map(Path::to_path_buf);
        if dir.is_none() {
            dir = parent;
        }
    }
    Ok(ResolvedModel {
        source: ModelSource::Hub {
            repo: repo.to_string(),
            revision,
        },
        dir: dir.expect("MODEL_FILES is not empty"),
    })
}

/// A file of `repo` in the cache: through the revision's ref, or directly in the
/// snapshot folder when the revision is a commit hash.
fn cached(cache_dir: &Path, repo: &Repo, file: &str) -> Option<PathBuf> {
    if let Some(path) = Cache::new(cache_dir.to_path_buf())
        .repo(repo.clone())
        .get(file)
    {
        return Some(path);
    }
    let snapshot = cache_dir
        .join(repo.folder_name())
        .join("snapshots")
        .join(repo.revision())
        .join(file);
    snapshot.is_file().then_some(snapshot)
}

fn download(cache_dir: &Path, repo: &Repo, file: &str) -> Result<PathBuf, String> {
    let mut builder =
        hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
            .with_progress(false);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    // hf-hub's blocking client sets no timeouts: wait on it with a deadline of our own, so an
    // endpoint that never answers is an error, not a hang.
    let timeout = hub_timeout()?;
    let (send, receive) = std::sync::mpsc::channel();
    let repo = repo.clone();
    let name = file.to_string();
    std::thread::spawn(move || {
        let _ = send.send(api.repo(repo).get(&name));
    });
    match receive.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| format!("downloading {file}: {e}")),
        Err(_) => Err(format!(
            "downloading {file}: no answer from {} within {} s ({TIMEOUT_ENV}=SECONDS waits longer)",
            std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into()),
            timeout.as_secs_f64()
        )),
    }
}

/// Seconds to wait for one file from the hub (default 300).
pub const TIMEOUT_ENV: &str = "STANDPOINT_HUB_TIMEOUT";

fn hub_timeout() -> Result<std::time::Duration, String> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(std::time::Duration::from_secs(300)),
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("{TIMEOUT_ENV}={text:?} is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_hub_id;

    #[test]
    fn hub_ids_parse_with_and_without_revision() {
        assert_eq!(parse_hub_id("org/name"), Some(("org/name", None)));
        assert_eq!(
            parse_hub_id("org/name@v1.0"),
            Some(("org/name", Some("v1.0")))
        );
        assert_eq!(
            parse_hub_id("bert-base-uncased"),
            Some(("bert-base-uncased", None))
        );
        assert_eq!(parse_hub_id("a/b/c"), None);
        assert_eq!(parse_hub_id("./local"), None);
        assert_eq!(parse_hub_id("org/name@"), None);
        assert_eq!(parse_hub_id("org name"), None);
    }
}

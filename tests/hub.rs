//! Hub ids resolved through a Hugging Face cache laid out on disk (no network here).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use standpoint::hub::{ModelSource, ResolveOptions, resolve};
use standpoint::{Classifier, ClassifierOptions, Error};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `<root>/models--standpoint--tiny-bert/` as huggingface_hub writes it: blobs, a snapshot
/// of symlinks, and refs naming the commit.
fn lay_out_cache(root: &Path) -> PathBuf {
    let repo = root.join("models--standpoint--tiny-bert");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    for (i, file) in standpoint::hub::MODEL_FILES.iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(fixture("tiny-bert").join(file), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(file)).unwrap();
    }
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("refs/v1"), COMMIT).unwrap();
    snapshot
}

fn offline(cache: &Path) -> ResolveOptions {
    ResolveOptions {
        offline: true,
        revision: None,
        cache_dir: Some(cache.to_path_buf()),
    }
}

#[test]
fn hub_ids_resolve_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = lay_out_cache(tmp.path());
    for (reference, revision) in [
        ("standpoint/tiny-bert", "main"),
        ("standpoint/tiny-bert@v1", "v1"),
        (&format!("standpoint/tiny-bert@{COMMIT}"), COMMIT),
    ] {
        let resolved = resolve(reference, &offline(tmp.path())).unwrap();
        assert_eq!(resolved.dir, snapshot, "{reference}");
        assert_eq!(
            resolved.source,
            ModelSource::Hub {
                repo: "standpoint/tiny-bert".into(),
                revision: revision.into()
            }
        );
    }
    let options = ClassifierOptions {
        resolve: offline(tmp.path()),
        ..Default::default()
    };
    let classifier = Classifier::load("standpoint/tiny-bert", &options).unwrap();
    assert_eq!(classifier.info().source, "standpoint/tiny-bert@main");
    let from_hub = classifier
        .classify(&[standpoint::Query::text("Dialogue.")])
        .unwrap();
    let from_dir = load(&fixture("tiny-bert"))
        .unwrap()
        .classify(&[standpoint::Query::text("Dialogue.")])
        .unwrap();
    assert_eq!(from_hub, from_dir);
}

#[test]
fn absent_from_cache_while_offline_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    lay_out_cache(tmp.path());
    for reference in ["standpoint/other-model", "standpoint/tiny-bert@v2"] {
        match resolve(reference, &offline(tmp.path())) {
            Err(Error::Resolve {
                reference: r,
                reason,
            }) => {
                assert_eq!(r, reference);
                assert!(reason.contains("offline"), "{reason}");
                assert!(reason.contains("config.json"), "{reason}");
            }
            other => panic!("{reference}: expected Resolve error, got {other:?}"),
        }
    }
}

#[test]
fn neither_folder_nor_hub_id_is_a_clear_error() {
    let err = resolve("./no/such/folder", &ResolveOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Resolve { .. }), "{err:?}");
    assert!(err.to_string().contains("no such folder"), "{err}");
}

#[test]
fn cli_honours_hf_home_and_hf_hub_offline() {
    let tmp = tempfile::tempdir().unwrap();
    lay_out_cache(&tmp.path().join("hub"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["info", "--model", "standpoint/tiny-bert", "--json"])
        .env("HF_HOME", tmp.path())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["source"], "standpoint/tiny-bert@main");
    assert_eq!(info["architecture"], "bert");
}

#[test]
fn an_endpoint_that_never_answers_times_out_with_a_clear_error() {
    // Accepts connections and never replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let _connections: Vec<_> = listener.incoming().take(4).collect();
    });
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["info", "--model", "org/name"])
        .env("HF_HOME", tmp.path())
        .env("HF_ENDPOINT", &endpoint)
        .env(standpoint::hub::TIMEOUT_ENV, "1")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no answer from"), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    drop(held);
}

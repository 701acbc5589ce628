//! Pocket Studio's integration tests, as one test binary: each file was its
//! own binary, and every one linked tract, c2pa and zbus again, natively and
//! for aarch64. Modules keep the tests' names (`pipeline::parity_ddim`), so a
//! filter such as `cargo test --release --test it pipeline::` runs one area.
//!
//! Python peers (`tests/provenance/peer.py`) run with the packages that
//! `./setup.sh --tests` puts in `.venv`, see [`python3`].

mod camera;
mod cpu;
mod output;
mod pipeline;
mod provenance;
mod service;
mod ui;

/// The interpreter with the tests' Python packages: `.venv`'s when setup made
/// one (so a bare `cargo test` finds them too), else `python3` on PATH.
pub fn python3() -> std::process::Command {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    if venv.is_file() {
        std::process::Command::new(venv)
    } else {
        std::process::Command::new("python3")
    }
}

/// An image's metadata as the tiny bundle writes it at its native size;
/// tests override what they are about with `..crate::tiny_meta()`.
pub fn tiny_meta() -> pocket_studio::store::ImageMeta {
    pocket_studio::store::ImageMeta {
        prompt: String::new(),
        negative_prompt: String::new(),
        seed: 0,
        steps: 4,
        scheduler: "euler".into(),
        guidance: 4.0,
        generated_width: 64,
        generated_height: 64,
        model: "tiny-sd".into(),
        model_sha256: "unverified".into(),
        upscaler: None,
        upscaler_sha256: None,
        output: "native".into(),
        source: None,
        strength: None,
        software: "pocket-studio test".into(),
        watermark: String::new(),
        c2pa: String::new(),
    }
}

/// Copy a folder and everything below it, for tests that edit or break a
/// copy of a committed bundle.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

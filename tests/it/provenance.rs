//! Provenance checked by the peers' own tools (`tests/provenance/peer.py`):
//! the Python package `invisible-watermark` reads our marks and we read
//! its marks; `c2pa-python` validates our manifests and sees a changed
//! pixel; a robustness table for ordinary handling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pocket_studio::config::ProvenanceConfig;
use pocket_studio::provenance::watermark::{self, Payload};
use pocket_studio::provenance::{Provenance, report};
use pocket_studio::store::{ImageMeta, encode_png_bytes, read_png, write_png};
use serde_json::Value;

fn peer(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/provenance/peer.py");
    let out = crate::python3()
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "peer.py {args:?} failed (./setup.sh --tests installs its packages):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("peer.py prints JSON")
}

fn corpus(dir: &Path) -> Vec<PathBuf> {
    let names = peer(&["corpus", dir.to_str().expect("utf-8 path")]);
    names
        .as_array()
        .expect("a list of names")
        .iter()
        .map(|n| dir.join(n.as_str().expect("a name")))
        .collect()
}

/// A different 48-bit payload per picture, so no test passes by one lucky
/// pattern.
fn payload_for(i: usize) -> Payload {
    if i == 0 {
        return Payload::default();
    }
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let bits: String = (0..48)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 1 { '1' } else { '0' }
        })
        .collect();
    Payload::parse(&bits).expect("48 bits")
}

fn psnr(a: &pocket_studio::Image, b: &pocket_studio::Image) -> f64 {
    a.psnr(b).expect("same size, not empty")
}

/// PSNR of BT.601 luma only: what the eye is most sensitive to, and what
/// the mark (which moves chroma) should leave alone.
fn luma_psnr(a: &pocket_studio::Image, b: &pocket_studio::Image) -> f64 {
    let luma =
        |p: &[u8]| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
    let mse = a
        .rgb
        .chunks_exact(3)
        .zip(b.rgb.chunks_exact(3))
        .map(|(x, y)| (luma(x) - luma(y)).powi(2))
        .sum::<f64>()
        / (a.rgb.len() / 3) as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn our_marks_decode_in_invisible_watermark_and_theirs_decode_in_ours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let originals = corpus(&dir.path().join("corpus"));
    assert!(originals.len() >= 20, "{} pictures", originals.len());
    let ours_dir = dir.path().join("ours");
    std::fs::create_dir_all(&ours_dir).expect("mkdir");

    let mut ours = Vec::new();
    let mut expected = BTreeMap::new();
    let mut psnr_ours = Vec::new();
    let mut luma_ours = Vec::new();
    let mut unmarked_separation = 0.0f32;
    for (i, path) in originals.iter().enumerate() {
        let original = read_png(path).expect("corpus PNG");
        let unmarked = watermark::decode(&original, 48).expect("corpus pictures are big enough");
        assert!(
            !unmarked.detected(),
            "{}: unmarked, yet separation {:.2}",
            path.display(),
            unmarked.separation
        );
        unmarked_separation = unmarked_separation.max(unmarked.separation);
        let payload = payload_for(i);
        let mut marked = original.clone();
        assert_eq!(
            watermark::embed(&mut marked, &payload),
            watermark::Embedded::Marked
        );
        psnr_ours.push(psnr(&original, &marked));
        luma_ours.push(luma_psnr(&original, &marked));
        let out = ours_dir.join(path.file_name().expect("file name"));
        write_png(&out, &marked, &[]).expect("write");
        expected.insert(path_str(&out).to_string(), payload.to_bit_string());
        ours.push(out);
    }
    let mut args = vec!["decode", "48"];
    args.extend(ours.iter().map(|p| path_str(p)));
    let theirs_read = peer(&args);
    for (file, bits) in &expected {
        assert_eq!(
            theirs_read[file].as_str(),
            Some(bits.as_str()),
            "invisible-watermark read {file} wrong"
        );
    }

    // Theirs, read by ours.
    let their_bits = "011010011100101011110000101101001110010110100111";
    let theirs_dir = dir.path().join("theirs");
    let mut args = vec!["encode", their_bits];
    args.extend(originals.iter().map(|p| path_str(p)));
    args.extend(["--out", path_str(&theirs_dir)]);
    peer(&args);
    // Their encoder rounds down and can demote the value it set, so a few
    // of its own marks miss bits in its own decoder; ours must read exactly
    // what theirs reads, and the whole payload wherever theirs does.
    let marked_by_them: Vec<PathBuf> = originals
        .iter()
        .map(|p| theirs_dir.join(p.file_name().expect("name")))
        .collect();
    let mut args = vec!["decode", "48"];
    args.extend(marked_by_them.iter().map(|p| path_str(p)));
    let their_reading = peer(&args);
    let mut psnr_theirs = Vec::new();
    let mut luma_theirs = Vec::new();
    let mut whole = 0;
    for (original, path) in originals.iter().zip(&marked_by_them) {
        let marked = read_png(path).expect("theirs");
        let original = read_png(original).expect("original");
        psnr_theirs.push(psnr(&original, &marked));
        luma_theirs.push(luma_psnr(&original, &marked));
        let read = watermark::decode(&marked, 48).expect("big enough");
        let theirs = their_reading[path_str(path)].as_str().expect("bits");
        assert_eq!(
            read.bit_string(),
            theirs,
            "{}: we read it differently",
            path.display()
        );
        if theirs == their_bits {
            whole += 1;
            assert!(
                read.detected(),
                "{}: separation {:.2}",
                path.display(),
                read.separation
            );
        }
    }
    println!(
        "invisible-watermark's marks: {whole} of {} carry the whole payload in its decoder; ours reads all {} identically",
        originals.len(),
        originals.len()
    );
    assert!(
        whole * 2 >= originals.len(),
        "most of their marks should be whole"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("unmarked pictures: separation at most {unmarked_separation:.2}");
    println!(
        "{} pictures: PSNR vs the original, ours mean {:.1} dB (min {:.1}), invisible-watermark's mean {:.1} dB (min {:.1})",
        originals.len(),
        mean(&psnr_ours),
        min(&psnr_ours),
        mean(&psnr_theirs),
        min(&psnr_theirs)
    );
    println!(
        "luma PSNR: ours mean {:.1} dB (min {:.1}), invisible-watermark's mean {:.1} dB (min {:.1})",
        mean(&luma_ours),
        min(&luma_ours),
        mean(&luma_theirs),
        min(&luma_theirs)
    );
    // Ours moves whole 8x8 blocks (that is what survives JPEG), so it
    // changes more pixels than theirs; keep it within a known bound.
    assert!(min(&psnr_ours) >= 28.0, "PSNR {:.1} dB", min(&psnr_ours));
}

#[test]
fn robustness_to_ordinary_handling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let originals = corpus(&dir.path().join("corpus"));
    let payload = Payload::default();
    let picked: Vec<&PathBuf> = originals
        .iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            [
                "3840x2160",
                "2160x3840",
                "1920x1080",
                "1024x1024",
                "1280x720",
                "512x512",
            ]
            .iter()
            .any(|s| name.contains(s))
        })
        .collect();
    // Per handling: (bit accuracy, separation, detected) of each picture.
    let mut table: BTreeMap<String, Vec<(f32, f32, bool)>> = BTreeMap::new();
    for path in &picked {
        let mut image = read_png(path).expect("corpus PNG");
        watermark::embed(&mut image, &payload);
        let marked = dir.path().join(path.file_name().expect("name"));
        write_png(&marked, &image, &[]).expect("write");
        let untouched = watermark::decode(&image, 48).expect("big enough");
        table.entry("untouched PNG".into()).or_default().push((
            untouched.accuracy(&payload),
            untouched.separation,
            untouched.detected(),
        ));
        let variants = peer(&[
            "attack",
            path_str(&marked),
            "--out",
            path_str(&dir.path().join("attacked")),
        ]);
        for (kind, file) in variants.as_object().expect("kind -> file") {
            let bytes = std::fs::read(file.as_str().expect("path")).expect("attacked file");
            let attacked = pocket_studio::source::decode(&bytes).expect("decodes");
            let read = watermark::decode(&attacked, 48);
            let seen = read.as_ref().map_or((0.0, 0.0, false), |d| {
                (d.accuracy(&payload), d.separation, d.detected())
            });
            table.entry(kind.clone()).or_default().push(seen);
        }
    }
    println!(
        "bit accuracy over {} marked pictures (48 bits):",
        picked.len()
    );
    println!("| handling | mean | worst | mean separation | detected |");
    println!("|---|---|---|---|---|");
    for (kind, values) in &table {
        let mean = values.iter().map(|v| v.0).sum::<f32>() / values.len() as f32;
        let worst = values.iter().map(|v| v.0).fold(1.0f32, f32::min);
        let separation = values.iter().map(|v| v.1).sum::<f32>() / values.len() as f32;
        let detected = values.iter().filter(|v| v.2).count();
        println!(
            "| {kind} | {:.1} % | {:.1} % | {separation:.2} | {detected} of {} |",
            mean * 100.0,
            worst * 100.0,
            values.len()
        );
    }
    assert!(
        table["untouched PNG"]
            .iter()
            .all(|&(a, _, seen)| a == 1.0 && seen)
    );
    let jpeg90 = &table["jpeg90"];
    assert!(
        jpeg90.iter().all(|&(a, _, _)| a >= 0.9),
        "JPEG 90 must keep 90 % of the bits: {jpeg90:?}"
    );
}

fn meta() -> ImageMeta {
    ImageMeta {
        prompt: "a lighthouse".into(),
        seed: 7,
        model_sha256: "ab".repeat(32),
        upscaler: Some("realesr-animevideov3-x4".into()),
        upscaler_sha256: Some("cd".repeat(32)),
        output: "4k".into(),
        ..crate::tiny_meta()
    }
}

/// A marked and signed PNG as the producer makes one.
fn signed_png(provenance: &Provenance, out: &Path) -> ImageMeta {
    let mut image = read_png(&corpus(&out.with_extension("corpus"))[0]).expect("corpus");
    let mut meta = meta();
    meta.watermark = provenance.watermark(&mut image);
    meta.c2pa = provenance.c2pa_state().into();
    let png = encode_png_bytes(&image, &meta.text_chunks(image.width, image.height)).expect("png");
    let png = provenance.seal(png, "test.png", &meta).expect("signed");
    std::fs::write(out, png).expect("write");
    meta
}

#[test]
fn manifests_validate_in_c2pa_python_and_a_changed_pixel_breaks_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let provenance =
        Provenance::from_config(&ProvenanceConfig::default(), &state).expect("identity");
    let key = state.join("provenance/device-key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("key made")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the signing key is private");
    let ca = state.join("provenance/device-ca.pem");

    let file = dir.path().join("signed.png");
    let meta = signed_png(&provenance, &file);
    assert!(
        meta.watermark.starts_with("dwtDct 1011"),
        "{}",
        meta.watermark
    );
    assert_eq!(meta.c2pa, "signed");

    let trusted = peer(&["c2pa", path_str(&file), "--trust", path_str(&ca)]);
    assert_eq!(trusted["state"], "Trusted", "{trusted}");
    let created = &trusted["actions"][0]["actions"][0];
    assert_eq!(created["action"], "c2pa.created", "{trusted}");
    assert_eq!(
        created["digitalSourceType"],
        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    );
    assert_eq!(created["softwareAgent"]["name"], "Pocket Studio");
    assert!(
        trusted["labels"]
            .as_array()
            .expect("labels")
            .contains(&"org.pocketstudio.generation".into())
    );
    let untrusted = peer(&["c2pa", path_str(&file)]);
    assert_eq!(untrusted["state"], "Valid", "{untrusted}");
    assert!(
        untrusted["status"]
            .as_array()
            .expect("codes")
            .contains(&"signingCredential.untrusted".into())
    );

    // Ours agrees, and the prompt stays out unless asked for.
    let anchors = std::fs::read_to_string(&ca).expect("ca");
    let seen = report::inspect(&file, &Payload::default(), Some(&anchors)).expect("inspect");
    let manifest = seen.manifest.as_ref().expect("a manifest");
    assert_eq!(manifest.state, "Trusted");
    let generation = manifest.generation.as_ref().expect("generation assertion");
    assert_eq!(generation["model_sha256"], "ab".repeat(32));
    assert_eq!(generation["upscaler"], "realesr-animevideov3-x4");
    assert!(generation.get("prompt").is_none(), "{generation}");
    assert!(seen.watermark.as_ref().is_some_and(|w| w.detected()));
    assert_eq!(seen.text["c2pa"], "signed");
    println!("{seen}");

    // One pixel changed, every other chunk kept: the hash no longer matches.
    let touched = dir.path().join("touched.png");
    peer(&["touch", path_str(&file), path_str(&touched)]);
    let broken = peer(&["c2pa", path_str(&touched), "--trust", path_str(&ca)]);
    assert_eq!(broken["state"], "Invalid", "{broken}");
    assert!(
        broken["status"]
            .as_array()
            .expect("codes")
            .contains(&"assertion.dataHash.mismatch".into()),
        "{broken}"
    );
    let seen = report::inspect(&touched, &Payload::default(), Some(&anchors)).expect("inspect");
    let manifest = seen.manifest.expect("still a manifest");
    assert_eq!(manifest.state, "Invalid");
    assert!(
        manifest
            .failures
            .contains(&"assertion.dataHash.mismatch".to_string()),
        "{:?}",
        manifest.failures
    );

    // The identity persists; the prompt goes in only when configured.
    let again = Provenance::from_config(
        &ProvenanceConfig {
            include_prompt: true,
            ..Default::default()
        },
        &state,
    )
    .expect("same identity");
    let with_prompt = dir.path().join("with-prompt.png");
    signed_png(&again, &with_prompt);
    let seen = report::inspect(&with_prompt, &Payload::default(), Some(&anchors)).expect("inspect");
    let manifest = seen.manifest.expect("manifest");
    assert_eq!(manifest.state, "Trusted", "signed by the same device key");
    assert_eq!(
        manifest.generation.expect("generation")["prompt"],
        "a lighthouse"
    );
}

#[test]
fn switches_and_bad_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let off = Provenance::from_config(
        &ProvenanceConfig {
            watermark: false,
            c2pa: false,
            ..Default::default()
        },
        dir.path(),
    )
    .expect("off");
    let file = dir.path().join("plain.png");
    let meta = signed_png(&off, &file);
    assert_eq!(
        (meta.watermark.as_str(), meta.c2pa.as_str()),
        ("off", "off")
    );
    assert!(
        !dir.path().join("provenance").exists(),
        "no key made when C2PA is off"
    );
    let seen = report::inspect(&file, &Payload::default(), None).expect("inspect");
    assert!(seen.manifest.is_none());
    assert!(!seen.watermark.as_ref().expect("big enough").detected());
    assert!(seen.to_string().contains("c2pa: none"));

    // Small images are skipped, and say so.
    let on = Provenance::from_config(&ProvenanceConfig::default(), dir.path()).expect("on");
    let mut small = pocket_studio::Image {
        width: 200,
        height: 300,
        rgb: vec![90; 200 * 300 * 3],
    };
    assert!(on.watermark(&mut small).starts_with("skipped: 200x300"));

    // A provisioned key that is not a key stops the start with a clear error.
    let bad = dir.path().join("bad-key.pem");
    std::fs::write(&bad, "not a key").expect("write");
    let chain = dir.path().join("provenance/device-chain.pem");
    let err = Provenance::from_config(
        &ProvenanceConfig {
            key: Some(bad),
            certificate: Some(chain.clone()),
            ..Default::default()
        },
        dir.path(),
    )
    .expect_err("bad key");
    assert!(err.to_string().contains("signing key"), "{err}");
    // The device's own files work as a provisioned pair.
    let key = dir.path().join("provenance/device-key.pem");
    Provenance::from_config(
        &ProvenanceConfig {
            key: Some(key),
            certificate: Some(chain),
            ..Default::default()
        },
        dir.path(),
    )
    .expect("provisioned key");
}

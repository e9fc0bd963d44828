//! Every committed seed and every input that once made a fuzz target fail, run through its
//! check on stable with the rest of the suite: a fixed finding stays fixed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_and_every_past_crash_passes_its_check() {
    for (name, check) in nimbus_fuzz::TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seeds");
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for input in seeds.iter().chain(&regressions) {
            let data = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", input.display());
        }
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_binary_and_no_binary_lacks_a_check() {
    let mut binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    binaries.sort();
    let mut names: Vec<String> = nimbus_fuzz::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    assert_eq!(binaries, names);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks {name}"
        );
        let source =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            source.contains(&format!("nimbus_fuzz::{name}(")),
            "{name}.rs runs another check"
        );
    }
}

/// The route-access seeds reach the paths the check asserts on: a token that verifies (issued
/// by PyJWT with the RFC 8037 test key), and an allowed preflight.
#[test]
fn the_route_access_seed_token_verifies() {
    let seed =
        std::fs::read_to_string(fuzz_dir().join("seeds/route_access/eddsa_token_and_preflight"))
            .unwrap();
    let token = nimbus_access::jwt::bearer(seed.lines().next().unwrap()).to_string();
    let keys = nimbus_access::KeySet::parse(nimbus_fuzz::ACCESS_JWKS.as_bytes()).unwrap();
    let authorizer = nimbus_core::access::JwtAuthorizer {
        name: "users".into(),
        issuer: "https://issuer.test/".into(),
        audiences: vec!["shop".into()],
        keys: nimbus_core::access::JwtKeys::Inline(String::new()),
        identity_source: nimbus_core::access::IdentitySource::authorization(),
    };
    let verified = nimbus_access::jwt::verify(&token, &keys, &authorizer, 1_440_938_160).unwrap();
    assert_eq!(verified.scopes, ["a", "b"]);
    assert!(keys.has_kid("rsa-1"), "the RSA key parses too");
}

use super::*;
use crate::audit::checkpoint::{AuditKey, Checkpoint};
use crate::audit::event::{Event, Stage};
use crate::audit::tree::root;

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn leaves(n: u32) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn ct_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| leaf_hash(&hex::decode(s).unwrap()))
    .collect()
}

/// RFC 6962 §2.1.1 PATH, written as the RFC states it, to check the streaming builder.
fn rfc_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = crate::audit::tree::split_point(d.len());
    if m < k {
        let mut p = rfc_path(m, &d[..k]);
        p.push(root(&d[k..]));
        p
    } else {
        let mut p = rfc_path(m - k, &d[k..]);
        p.push(root(&d[..k]));
        p
    }
}

/// RFC 6962 §2.1.2 SUBPROOF, as the RFC states it.
fn rfc_subproof(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if whole { vec![] } else { vec![root(d)] };
    }
    let k = crate::audit::tree::split_point(n);
    if m <= k {
        let mut p = rfc_subproof(m, &d[..k], whole);
        p.push(root(&d[k..]));
        p
    } else {
        let mut p = rfc_subproof(m - k, &d[k..], false);
        p.push(root(&d[..k]));
        p
    }
}

#[test]
fn inclusion_paths_match_certificate_transparency_vectors() {
    let d = ct_leaves();
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(
            inclusion_path(&d, index, size).unwrap(),
            want,
            "{index} in {size}"
        );
        let r = root(&d[..size as usize]);
        assert!(verify_inclusion(&d[index as usize], index, size, &want, &r));
    }
    assert_eq!(inclusion_path(&d, 0, 1).unwrap(), Vec::<Hash>::new());
}

#[test]
fn consistency_proofs_match_certificate_transparency_vectors() {
    let d = ct_leaves();
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            3,
            7,
            &[
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(
            consistency_path(&d, old, new).unwrap(),
            want,
            "{old} to {new}"
        );
        let (ro, rn) = (root(&d[..old as usize]), root(&d[..new as usize]));
        assert!(verify_consistency(old, new, &ro, &rn, &want));
    }
}

#[test]
fn streaming_paths_equal_the_rfc_definitions() {
    let d = leaves(40);
    for n in 1..=40usize {
        for m in 0..n {
            assert_eq!(
                inclusion_path(&d, m as u64, n as u64).unwrap(),
                rfc_path(m, &d[..n]),
                "PATH({m}, D[{n}])"
            );
        }
        for m in 1..=n {
            assert_eq!(
                consistency_path(&d, m as u64, n as u64).unwrap(),
                rfc_subproof(m, &d[..n], true),
                "PROOF({m}, D[{n}])"
            );
        }
    }
}

#[test]
fn every_index_of_trees_to_40_verifies() {
    let d = leaves(41);
    for size in 1..=40u64 {
        let r = root(&d[..size as usize]);
        for index in 0..size {
            let path = inclusion_path(&d, index, size).unwrap();
            let leaf = d[index as usize];
            assert!(
                verify_inclusion(&leaf, index, size, &path, &r),
                "{index} in {size}"
            );
            // Tampered leaf, index, root, size and each path element all fail.
            assert!(!verify_inclusion(&d[40], index, size, &path, &r));
            if size > 1 {
                let other = (index + 1) % size;
                assert!(!verify_inclusion(&leaf, other, size, &path, &r));
            }
            assert!(!verify_inclusion(&leaf, index, size, &path, &d[40]));
            assert!(!verify_inclusion(&leaf, index + size, size, &path, &r));
            for i in 0..path.len() {
                let mut bad = path.clone();
                bad[i][0] ^= 1;
                assert!(!verify_inclusion(&leaf, index, size, &bad, &r));
            }
            let mut longer = path.clone();
            longer.push(r);
            assert!(!verify_inclusion(&leaf, index, size, &longer, &r));
            if !path.is_empty() {
                assert!(!verify_inclusion(&leaf, index, size, &path[1..], &r));
            }
        }
    }
}

#[test]
fn every_consistency_proof_of_trees_to_40_verifies() {
    let d = leaves(40);
    let roots: Vec<Hash> = (0..=40).map(|n| root(&d[..n])).collect();
    for new in 0..=40u64 {
        for old in 0..=new {
            let path = consistency_path(&d, old, new).unwrap();
            let (ro, rn) = (&roots[old as usize], &roots[new as usize]);
            assert!(
                verify_consistency(old, new, ro, rn, &path),
                "{old} to {new}"
            );
            if old > 0 && old < new {
                assert!(!verify_consistency(old, new, rn, rn, &path));
                assert!(!verify_consistency(old, new, ro, ro, &path));
                assert!(!verify_consistency(old - 1, new, ro, rn, &path));
                for i in 0..path.len() {
                    let mut bad = path.clone();
                    bad[i][31] ^= 0x80;
                    assert!(!verify_consistency(old, new, ro, rn, &bad));
                }
            }
        }
    }
    assert!(!verify_consistency(3, 2, &roots[3], &roots[2], &[]));
}

#[test]
fn out_of_range_requests_are_errors() {
    let d = leaves(4);
    assert_eq!(
        inclusion_path(&d, 4, 4),
        Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
    );
    assert_eq!(
        inclusion_path(&d, 0, 5),
        Err(ProofError::TooFewLeaves { size: 5, leaves: 4 })
    );
    assert_eq!(
        consistency_path(&d, 3, 2),
        Err(ProofError::SizesOutOfOrder { old: 3, new: 2 })
    );
    let mut b = PathBuilder::inclusion(1, 4).unwrap();
    b.push(d[0]);
    assert_eq!(
        b.finish(),
        Err(ProofError::TooFewLeaves { size: 4, leaves: 1 })
    );
}

#[test]
fn builder_ignores_leaves_past_the_tree_size() {
    let d = leaves(20);
    let mut b = PathBuilder::inclusion(3, 11).unwrap();
    for leaf in &d {
        b.push(*leaf);
    }
    assert_eq!(b.finish().unwrap(), inclusion_path(&d, 3, 11).unwrap());
}

fn event(i: u32) -> String {
    let body = Event {
        time: format!("2026-01-01T00:00:{:02}.000Z", i % 60).into(),
        stage: Stage::Proposed,
        call: Some(format!("call-{i}").into()),
        run: None,
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: None,
        detail: serde_json::json!({"amount": i}).into(),
    }
    .canonical();
    String::from_utf8(body).unwrap()
}

fn proof_for(index: u64, size: u64, key: &AuditKey) -> InclusionProof {
    let bodies: Vec<String> = (0..size as u32).map(event).collect();
    let hashes: Vec<Hash> = bodies.iter().map(|b| leaf_hash(b.as_bytes())).collect();
    let checkpoint = Checkpoint {
        origin: "remit.example/log".to_owned(),
        size,
        root: root(&hashes),
    };
    InclusionProof {
        body: bodies[index as usize].clone(),
        index,
        tree_size: size,
        path: inclusion_path(&hashes, index, size).unwrap(),
        checkpoint: checkpoint.sign(key),
        verifier: key.verifier().to_text(),
    }
}

/// A proof whose checkpoint the trusted key signed for another log is refused by
/// `check_against`, though its signature and path hold.
#[test]
fn a_proof_under_a_checkpoint_for_another_log_is_refused() {
    let key = AuditKey::generate("remit.example/log").unwrap();
    let proof = proof_for(3, 7, &key);
    proof.check().unwrap();
    assert_eq!(
        proof.check_against(&key.verifier(), "remit.example/other"),
        Err(ProofError::OtherOrigin {
            found: "remit.example/log".to_owned(),
            expected: "remit.example/other".to_owned(),
        })
    );
}

#[test]
fn inclusion_proof_checks_offline() {
    let key = AuditKey::generate("remit.example/log").unwrap();
    for size in [1, 2, 7, 16, 33] {
        for index in 0..size {
            let proof = proof_for(index, size, &key);
            proof.check().unwrap();
            proof
                .check_against(&key.verifier(), "remit.example/log")
                .unwrap();
        }
    }
}

#[test]
fn inclusion_proof_json_uses_lowercase_hex_and_round_trips() {
    let key = AuditKey::generate("remit.example/log").unwrap();
    let proof = proof_for(5, 13, &key);
    let json = serde_json::to_string_pretty(&proof).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for p in value["path"].as_array().unwrap() {
        let s = p.as_str().unwrap();
        assert_eq!(s.len(), 64);
        assert_eq!(s, s.to_lowercase());
    }
    let back: InclusionProof = serde_json::from_str(&json).unwrap();
    assert_eq!(back, proof);
    back.check().unwrap();
    let bad = json.replacen(&hex::encode(proof.path[0]), "zz", 1);
    assert!(serde_json::from_str::<InclusionProof>(&bad).is_err());
}

#[test]
fn tampered_inclusion_proofs_fail() {
    let key = AuditKey::generate("remit.example/log").unwrap();
    let proof = proof_for(5, 13, &key);

    let mut bad = proof.clone();
    bad.body = bad.body.replace("call-5", "call-6");
    assert_eq!(
        bad.check(),
        Err(ProofError::NotIncluded { index: 5, size: 13 })
    );

    let mut bad = proof.clone();
    bad.path[1][3] ^= 1;
    assert_eq!(
        bad.check(),
        Err(ProofError::NotIncluded { index: 5, size: 13 })
    );

    let mut bad = proof.clone();
    bad.index = 4;
    assert_eq!(
        bad.check(),
        Err(ProofError::NotIncluded { index: 4, size: 13 })
    );

    let mut bad = proof.clone();
    bad.tree_size = 14;
    assert_eq!(
        bad.check(),
        Err(ProofError::SizeMismatch {
            proof: 14,
            checkpoint: 13
        })
    );

    // A checkpoint over another root, validly signed, does not cover the event.
    let mut bad = proof.clone();
    bad.checkpoint = Checkpoint {
        origin: "remit.example/log".to_owned(),
        size: 13,
        root: [0; 32],
    }
    .sign(&key);
    assert_eq!(
        bad.check(),
        Err(ProofError::NotIncluded { index: 5, size: 13 })
    );

    // An edited root in the note breaks its signature.
    let mut bad = proof.clone();
    let lines: Vec<&str> = proof.checkpoint.split('\n').collect();
    let edited_root = base64_flip(lines[2]);
    bad.checkpoint = proof.checkpoint.replacen(lines[2], &edited_root, 1);
    assert!(matches!(
        bad.check(),
        Err(ProofError::Checkpoint(CheckpointError::BadSignature(_)))
    ));

    // Another key signing the same tree is caught by check_against.
    let other = AuditKey::generate("remit.example/log").unwrap();
    let forged = proof_for(5, 13, &other);
    forged.check().unwrap();
    assert_eq!(
        forged.check_against(&key.verifier(), "remit.example/log"),
        Err(ProofError::UntrustedKey("remit.example/log".to_owned()))
    );
    // Swapping in the trusted key text leaves a checkpoint it never signed.
    let mut swapped = forged;
    swapped.verifier = key.verifier().to_text();
    assert!(matches!(
        swapped.check(),
        Err(ProofError::Checkpoint(CheckpointError::NotSigned(_)))
    ));
}

fn base64_flip(b64: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(b64).unwrap();
    bytes[0] ^= 1;
    engine.encode(bytes)
}

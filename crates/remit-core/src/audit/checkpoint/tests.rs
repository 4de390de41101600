use super::*;

fn key() -> AuditKey {
    AuditKey::from_seed("remit.example/log", &[7u8; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "remit.example/log".to_owned(),
        size: 42,
        root: [0xab; 32],
    }
}

#[test]
fn signed_checkpoint_round_trips() {
    let key = AuditKey::generate("remit.example/log").unwrap();
    let note = checkpoint().sign(&key);
    assert_eq!(key.verifier().verify(&note).unwrap(), checkpoint());
}

#[test]
fn note_has_the_c2sp_layout() {
    let key = key();
    let note = checkpoint().sign(&key);
    let want_body = format!("remit.example/log\n42\n{}\n", BASE64.encode([0xab; 32]));
    let (body, sig) = note.split_once("\n\n").unwrap();
    assert_eq!(format!("{body}\n"), want_body);
    let sig = sig.strip_prefix("\u{2014} remit.example/log ").unwrap();
    let blob = BASE64.decode(sig.trim_end()).unwrap();
    assert_eq!(blob.len(), 68);
    assert_eq!(blob[..4], key.id);
    assert!(note.ends_with('\n'));
}

#[test]
fn key_id_is_computed_as_specified() {
    let key = key();
    let public = key.signing.verifying_key().to_bytes();
    let mut input = b"remit.example/log\n".to_vec();
    input.push(0x01);
    input.extend_from_slice(&public);
    let digest = Sha256::digest(&input);
    assert_eq!(key.verifier().key_id(), digest[..4]);
    let text = key.verifier().to_text();
    assert!(
        text.starts_with(&format!("remit.example/log+{}+", hex::encode(&digest[..4]))),
        "{text}"
    );
}

#[test]
fn key_id_matches_go_note_vector() {
    // golang.org/x/mod/sumdb/note example: vkey
    // PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW
    let v =
        Verifier::from_text("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(hex::encode(v.key_id()), "c74f20a3");
}

#[test]
fn go_note_private_key_reads_and_matches_its_verifier() {
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let key = AuditKey::from_text(skey).unwrap();
    assert_eq!(
        key.verifier().to_text(),
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    );
    assert_eq!(key.to_text(), skey);
}

#[test]
fn go_note_signature_verifies() {
    // The example message of golang.org/x/mod/sumdb/note; its text is not a checkpoint.
    let v =
        Verifier::from_text("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let msg = format!(
        "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    assert_eq!(v.open(&msg).unwrap(), text);
    assert!(matches!(v.verify(&msg), Err(CheckpointError::Body(_))));
    // Ed25519 is deterministic: signing the same text gives the same line.
    let key = AuditKey::from_text(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    )
    .unwrap();
    let sig = key.signing.sign(text.as_bytes());
    let mut blob = key.id.to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    assert!(msg.ends_with(&format!(" {}\n", BASE64.encode(blob))));
}

#[test]
fn private_key_text_round_trips() {
    let key = AuditKey::generate("audit").unwrap();
    let text = key.to_text();
    assert!(text.starts_with("PRIVATE+KEY+audit+"));
    let again = AuditKey::from_text(&text).unwrap();
    assert_eq!(again.verifier(), key.verifier());
    assert_eq!(again.to_text(), text);
}

#[test]
fn verifier_text_round_trips() {
    let v = key().verifier();
    assert_eq!(Verifier::from_text(&v.to_text()).unwrap(), v);
}

#[test]
fn debug_never_prints_the_seed() {
    let key = key();
    let debug = format!("{key:?}");
    let text = key.to_text();
    let seed_b64 = text.rsplit('+').next().unwrap();
    assert!(!debug.contains(seed_b64));
    assert!(!debug.contains(&hex::encode([7u8; 32])));
    assert!(!debug.contains("7, 7, 7"));
    assert!(debug.contains("redacted"));
}

#[test]
fn private_key_with_wrong_id_is_rejected() {
    let text = key().to_text();
    let parts: Vec<&str> = text.splitn(5, '+').collect();
    let bad = format!("PRIVATE+KEY+{}+00000000+{}", parts[2], parts[4]);
    assert_eq!(
        AuditKey::from_text(&bad).unwrap_err(),
        CheckpointError::PrivateKey("the key id does not match the key")
    );
}

#[test]
fn malformed_key_texts_are_rejected() {
    for bad in [
        "",
        "name",
        "name+1234",
        "name+zzzzzzzz+AQ==",
        "a b+00000000+AQ==",
    ] {
        assert!(Verifier::from_text(bad).is_err(), "{bad}");
        assert!(
            AuditKey::from_text(&format!("PRIVATE+KEY+{bad}")).is_err(),
            "{bad}"
        );
    }
    assert!(AuditKey::from_text(&key().verifier().to_text()).is_err());
}

#[test]
fn invalid_key_names_are_refused() {
    for bad in ["", "a+b", "a b", "tab\there"] {
        assert_eq!(
            AuditKey::generate(bad).unwrap_err(),
            CheckpointError::KeyName(bad.to_owned())
        );
    }
}

#[test]
fn wrong_key_is_rejected() {
    let note = checkpoint().sign(&key());
    let other = AuditKey::from_seed("remit.example/log", &[8u8; 32]).verifier();
    assert_eq!(
        other.verify(&note).unwrap_err(),
        CheckpointError::NotSigned("remit.example/log".to_owned())
    );
}

#[test]
fn edited_size_is_rejected() {
    let note = checkpoint().sign(&key());
    let edited = note.replacen("\n42\n", "\n43\n", 1);
    assert_ne!(edited, note);
    assert_eq!(
        key().verifier().verify(&edited).unwrap_err(),
        CheckpointError::BadSignature("remit.example/log".to_owned())
    );
}

#[test]
fn edited_root_is_rejected() {
    let note = checkpoint().sign(&key());
    let old = BASE64.encode([0xab; 32]);
    let edited = note.replacen(&old, &BASE64.encode([0xac; 32]), 1);
    assert_ne!(edited, note);
    assert_eq!(
        key().verifier().verify(&edited).unwrap_err(),
        CheckpointError::BadSignature("remit.example/log".to_owned())
    );
}

#[test]
fn edited_signature_is_rejected() {
    let note = checkpoint().sign(&key());
    let (head, sig) = note.rsplit_once(' ').unwrap();
    let mut blob = BASE64.decode(sig.trim_end()).unwrap();
    blob[10] ^= 1;
    let edited = format!("{head} {}\n", BASE64.encode(blob));
    assert_eq!(
        key().verifier().verify(&edited).unwrap_err(),
        CheckpointError::BadSignature("remit.example/log".to_owned())
    );
}

#[test]
fn unsigned_note_is_rejected() {
    let body = checkpoint().body();
    assert!(key().verifier().verify(&body).is_err());
    assert!(key().verifier().verify(&format!("{body}\n")).is_err());
}

#[test]
fn signatures_from_unknown_keys_are_tolerated() {
    let ours = key();
    let theirs = AuditKey::from_seed("witness.example", &[9u8; 32]);
    let note = checkpoint().sign(&ours);
    let their_line = checkpoint()
        .sign(&theirs)
        .split_once("\n\n")
        .unwrap()
        .1
        .to_owned();
    let cosigned = format!("{note}{their_line}");
    assert_eq!(ours.verifier().verify(&cosigned).unwrap(), checkpoint());
    let their_first = format!(
        "{}\n{their_line}{}",
        checkpoint().body(),
        note.split_once("\n\n").unwrap().1
    );
    assert_eq!(ours.verifier().verify(&their_first).unwrap(), checkpoint());
    // Only a stranger signed it.
    assert!(matches!(
        ours.verifier().verify(&checkpoint().sign(&theirs)),
        Err(CheckpointError::NotSigned(_))
    ));
}

#[test]
fn body_must_be_exactly_three_lines() {
    let key = key();
    for body in [
        "origin\n42\n",
        "origin\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\nextension\n",
        "\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n042\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n-1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n42\nq6urq6ur\n",
        "origin\n99999999999999999999999\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
    ] {
        let sig = key.signing.sign(body.as_bytes());
        let mut blob = key.id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!("{body}\n\u{2014} {} {}\n", key.name, BASE64.encode(blob));
        assert!(
            matches!(key.verifier().verify(&note), Err(CheckpointError::Body(_))),
            "{body:?}"
        );
    }
}

#[test]
fn malformed_framing_is_rejected() {
    let note = checkpoint().sign(&key());
    let v = key().verifier();
    for bad in [
        note.trim_end().to_owned(),
        note.replace('\u{2014}', "-"),
        format!("{note}\n"),
        note.replacen("\n42\n", "\n42\r\n", 1),
        format!("{note}\u{2014} x !!!\n"),
    ] {
        assert!(
            matches!(v.verify(&bad), Err(CheckpointError::Note(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn zero_size_checkpoint_round_trips() {
    let cp = Checkpoint {
        origin: "o".to_owned(),
        size: 0,
        root: crate::audit::tree::empty_root(),
    };
    assert_eq!(key().verifier().verify(&cp.sign(&key())).unwrap(), cp);
}

#[test]
fn messages_are_lowercase_one_line() {
    let v = key().verifier();
    let e = v.verify("x").unwrap_err().to_string();
    assert_eq!(
        e,
        "malformed signed note: it has no blank line before the signatures"
    );
    assert_eq!(
        CheckpointError::NotSigned("k".to_owned()).to_string(),
        "checkpoint is not signed by key `k`"
    );
}

#[test]
fn the_status_token_is_the_private_keys_alone_and_checked_whole() {
    let token = key().status_token();
    let check = StatusToken::of(&key());
    assert!(check.admits(&token));
    // another key's token, a changed character, a prefix, nothing, the public key's text
    let other = AuditKey::from_seed("remit.example/log", &[8u8; 32]).status_token();
    assert_ne!(other, token);
    let mut changed = token.clone().into_bytes();
    changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
    for wrong in [
        other,
        String::from_utf8(changed).unwrap(),
        token[..63].to_owned(),
        String::new(),
        key().verifier().to_text(),
    ] {
        assert!(!check.admits(&wrong), "{wrong}");
    }
    // the token is not the seed, and neither it nor its check is printed
    assert!(!token.contains(&hex::encode([7u8; 32])));
    assert_eq!(format!("{check:?}"), "StatusToken(<redacted>)");
}

#[test]
fn the_signers_of_a_note_are_read_off_its_signature_lines() {
    let key = AuditKey::generate("audit").unwrap();
    let note = Checkpoint {
        origin: "remit.example/log".to_owned(),
        size: 3,
        root: [7; 32],
    }
    .sign(&key);
    assert_eq!(signers(&note).collect::<Vec<_>>(), vec!["audit"]);
    assert_eq!(signers("no signatures\n").count(), 0);
}

//! signify(1) keys and detached signatures: `freebsd-sim keygen DIR`, `image --sign SECKEY`.

use crate::state::io_fail;
use crate::{Fail, Res};
use libsignify::{Codeable, NewKeyOpts, PrivateKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes an unencrypted key pair `DIR/sim.pub` and `DIR/sim.sec` (mode 0600), as
/// `signify -G -n -c sim` would.
pub fn keygen(dir: &Path) -> Res<String> {
    fs::create_dir_all(dir).map_err(|e| io_fail("mkdir", dir, e))?;
    let sk = PrivateKey::generate(&mut rand_core::OsRng, NewKeyOpts::NoEncryption)
        .map_err(|e| Fail::new(1, format!("freebsd-sim keygen: generate key: {e}")))?;
    let pubfile = dir.join("sim.pub");
    fs::write(&pubfile, sk.public().to_file_encoding("sim public key"))
        .map_err(|e| io_fail("write", &pubfile, e))?;
    let secfile = dir.join("sim.sec");
    let _ = fs::remove_file(&secfile);
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&secfile)
        .and_then(|mut f| f.write_all(&sk.to_file_encoding("sim secret key")))
        .map_err(|e| io_fail("write", &secfile, e))?;
    Ok(String::new())
}

/// Signs the bytes of `msg` with the secret key file `seckey` into `sig` (`signify -S`).
pub fn sign(seckey: &Path, msg: &Path, sig: &Path) -> Res<()> {
    let fail = |what: String| Fail::new(1, format!("freebsd-sim image: {what}"));
    let text = fs::read_to_string(seckey).map_err(|e| io_fail("read", seckey, e))?;
    let (sk, _) = PrivateKey::from_base64(&text)
        .map_err(|e| fail(format!("parse secret key {}: {e}", seckey.display())))?;
    if sk.is_encrypted() {
        return Err(fail(format!(
            "secret key {}: encrypted keys are not supported",
            seckey.display()
        )));
    }
    let bytes = fs::read(msg).map_err(|e| io_fail("read", msg, e))?;
    // signify names the matching public key when the secret key is called *.sec.
    let name = seckey
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comment = match name.strip_suffix(".sec") {
        Some(stem) if !stem.is_empty() => format!("verify with {stem}.pub"),
        _ => {
            let key_comment = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("untrusted comment: "))
                .unwrap_or("");
            format!("signature from {key_comment}")
        }
    };
    fs::write(sig, sk.sign(&bytes).to_file_encoding(&comment)).map_err(|e| io_fail("write", sig, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libsignify::{PublicKey, Signature};

    #[test]
    fn keygen_sign_verify() {
        let d = std::env::temp_dir().join(format!("fsim-sign-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        keygen(&d).unwrap();
        let msg = d.join("x.skein");
        fs::write(&msg, "abc\n").unwrap();
        let sig = d.join("x.skein.sig");
        sign(&d.join("sim.sec"), &msg, &sig).unwrap();
        let pub_text = fs::read_to_string(d.join("sim.pub")).unwrap();
        assert!(pub_text.starts_with("untrusted comment: sim public key\n"));
        let sig_text = fs::read_to_string(&sig).unwrap();
        assert!(sig_text.starts_with("untrusted comment: verify with sim.pub\n"));
        let (pk, _) = PublicKey::from_base64(&pub_text).unwrap();
        let (s, _) = Signature::from_base64(&sig_text).unwrap();
        pk.verify(b"abc\n", &s).unwrap();
        assert!(pk.verify(b"abd\n", &s).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}

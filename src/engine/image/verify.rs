//! What an image's small files say and whether they hold: the `.skein` digest, the signify
//! signature over it, and the `.meta` origin.

use super::provenance::Signer;
use super::{ImageError, ImageRef};
use crate::engine::{EngineError, ImagePolicy};
use libsignify::Codeable;
use std::path::PathBuf;

/// Hex of a digest, as `skein1024 -q` prints it.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `.skein` file is the hex digest and a newline, as `skein1024 -q` prints it.
pub(super) fn parse_skein(
    image: &ImageRef,
    location: &str,
    text: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let hex = std::str::from_utf8(text).unwrap_or_default().trim();
    let bytes: Option<Vec<u8>> = (hex.len() == 256)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes.ok_or_else(|| {
        image.err(ImageError::NotSkein {
            location: location.to_string(),
        })
    })
}

/// The signature covers the `.skein` file, which covers the image (as with `signify -V` in pot).
pub(super) fn verify_signature(
    image: &ImageRef,
    policy: &ImagePolicy,
    skein: &[u8],
    sig: Option<&[u8]>,
    sig_location: &str,
) -> Result<Signer, EngineError> {
    let Some(sig) = sig else {
        if policy.require_signature {
            return Err(image.err(ImageError::Unsigned {
                location: sig_location.to_string(),
            }));
        }
        return Ok(Signer::Unsigned);
    };
    let (signature, _) = libsignify::Signature::from_base64(
        std::str::from_utf8(sig).unwrap_or_default(),
    )
    .map_err(|source| {
        image.err(ImageError::NotSignature {
            location: sig_location.to_string(),
            source,
        })
    })?;
    let signer = signature.signer_keynum();
    for (path, key) in load_pubkeys(image, policy)? {
        if key.keynum() == signer {
            return key
                .verify(skein, &signature)
                .map(|()| Signer::Key(hex(signer.as_ref())))
                .map_err(|source| {
                    image.err(ImageError::BadSignature {
                        location: sig_location.to_string(),
                        file: image.file_name().into(),
                        key: path.display().to_string().into(),
                        source,
                    })
                });
        }
    }
    Err(image.err(ImageError::UnknownKey {
        location: sig_location.to_string(),
        keynum: hex(signer.as_ref()),
    }))
}

/// The configured signify public keys, each with its file.
pub(super) fn load_pubkeys(
    image: &ImageRef,
    policy: &ImagePolicy,
) -> Result<Vec<(PathBuf, libsignify::PublicKey)>, EngineError> {
    policy
        .pubkeys
        .iter()
        .map(|path| {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| {
                image.err(ImageError::Io {
                    op: "public key",
                    path: shown.clone(),
                    source,
                })
            })?;
            libsignify::PublicKey::from_base64(&text)
                .map(|(k, _)| (path.clone(), k))
                .map_err(|source| {
                    image.err(ImageError::PublicKey {
                        path: shown,
                        source,
                    })
                })
        })
        .collect()
}

/// `.meta` holds the origin of a layered image (`<pot>:<tag>@<snap>`) or `-`.
pub(super) fn check_origin(image: &ImageRef, meta: &[u8]) -> Result<(), EngineError> {
    let text = String::from_utf8_lossy(meta);
    let origin = text.lines().next().unwrap_or("").trim();
    if !origin.is_empty() && origin != "-" {
        return Err(image.err(ImageError::Layered {
            origin: origin.to_string(),
        }));
    }
    Ok(())
}

//! Which imported image a request may use. An image is recorded on its dataset with its source
//! (the `.xz`'s URL), the Skein-1024 digest it was verified against and how it was signed; a
//! start reuses it only when the source is the one it names and the signature satisfies the
//! current policy.
//!
//! The dataset is named as pot names an imported image, `<pot>_<tag>` with `.` turned into `_`,
//! when that name is free or holds this very source; otherwise the image gets a name of its
//! own, `<pot>_<tag>_<16 hex digits of its source's hash>`. So a job naming another server, or
//! tag `1_0` beside `1.0`, never runs what an earlier job imported under pot's name.

use super::{ImageError, ImageRef};
use crate::engine::{EngineError, ImagePolicy};
use crate::host::Host;
use crate::skein::Skein1024;

/// The `.xz`'s URL (or `file://` path) the image was imported from.
pub(in crate::engine) const SOURCE_PROP: &str = "nomad-pot-driver:source";
/// Hex of the Skein-1024 digest of `.xz ‖ .meta` that the import verified.
pub(in crate::engine) const SKEIN_PROP: &str = "nomad-pot-driver:skein";
/// `unsigned`, or `signify:<key number in hex>` of the key that verified the signature.
pub(in crate::engine) const SIGNATURE_PROP: &str = "nomad-pot-driver:signature";

/// How an image's `.skein` was signed, as far as the import checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signer {
    /// No signature was read: none required, and no key configured or none published.
    Unsigned,
    /// Verified with the configured key of this key number (hex).
    Key(String),
}

impl Signer {
    fn value(&self) -> String {
        match self {
            Signer::Unsigned => "unsigned".to_string(),
            Signer::Key(keynum) => format!("signify:{keynum}"),
        }
    }

    fn parse(value: &str) -> Option<Signer> {
        match value {
            "unsigned" => Some(Signer::Unsigned),
            v => v
                .strip_prefix("signify:")
                .map(|k| Signer::Key(k.to_string())),
        }
    }

    /// Why the current policy would not import an image signed this way, if it would not.
    fn refused_by(&self, policy: &ImagePolicy, keynums: &[String]) -> Option<String> {
        match self {
            Signer::Unsigned if policy.require_signature => {
                Some("it was imported unsigned and require_signature is set now".to_string())
            }
            Signer::Key(k) if !policy.pubkeys.is_empty() && !keynums.contains(k) => Some(format!(
                "it was signed by key number {k}, which is not among the configured public keys now"
            )),
            _ => None,
        }
    }
}

/// What the engine records on an imported image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Provenance {
    pub source: String,
    pub skein: String,
    pub signer: Signer,
}

impl Provenance {
    pub fn props(&self) -> [(&'static str, String); 3] {
        [
            (SOURCE_PROP, self.source.clone()),
            (SKEIN_PROP, self.skein.clone()),
            (SIGNATURE_PROP, self.signer.value()),
        ]
    }
}

/// The name an image from this source gets when pot's name holds another image.
pub(super) fn own_name(image: &ImageRef) -> String {
    let digest = Skein1024::digest(image.source().as_bytes());
    format!(
        "{}_{}",
        image.local_name(),
        &super::verify::hex(&digest)[..16]
    )
}

/// pot's name for an image whose dataset may carry [`own_name`]'s suffix: the key of its lock.
pub(super) fn lock_names(local: &str) -> Vec<String> {
    let mut names = vec![local.to_string()];
    if let Some((stem, suffix)) = local.rsplit_once('_')
        && suffix.len() == 16
        && suffix
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        names.push(stem.to_string());
    }
    names
}

/// Where an image stands on this host.
pub(super) enum Place {
    /// Imported from this source and acceptable to the current policy.
    Present(Found),
    /// Not imported: this is the dataset to import it into.
    Free(String),
}

/// An imported image's dataset and the snapshots of its root, read with its provenance.
pub(super) struct Found {
    pub dataset: String,
    /// The names after `<dataset>/m@`, sorted as pot sorts them.
    pub snapshots: Vec<String>,
}

/// Looks for the image under pot's name, then under its own. A dataset of the image's source that
/// the current policy would not accept is refused, never replaced: tasks may run from it.
pub(super) async fn find(
    host: &Host,
    jails: &str,
    policy: &ImagePolicy,
    image: &ImageRef,
) -> Result<Place, EngineError> {
    let source = image.source();
    let mut free = None;
    let names = [image.local_name(), own_name(image)];
    for name in &names {
        let dataset = format!("{jails}/{name}");
        let recorded = match recorded(host, &dataset).await {
            Err(e) if e.is_absent() => {
                free.get_or_insert(dataset);
                continue;
            }
            Err(e) => return Err(image.err(ImageError::Host(e))),
            Ok(recorded) => recorded,
        };
        let Some((found, signer)) = recorded.provenance.filter(|(s, _)| *s == source) else {
            continue;
        };
        let keynums = configured_keynums(image, policy)?;
        let why = match Signer::parse(&signer) {
            Some(signer) => signer.refused_by(policy, &keynums),
            None => Some(format!(
                "its signature record {signer:?} is not one the driver writes"
            )),
        };
        if let Some(why) = why {
            return Err(image.err(ImageError::RefusedByPolicy {
                dataset: dataset.into(),
                source_url: found.into(),
                why: why.into(),
            }));
        }
        return Ok(Place::Present(Found {
            dataset,
            snapshots: recorded.snapshots,
        }));
    }
    free.map(Place::Free).ok_or_else(|| {
        image.err(ImageError::NamesTaken {
            first: format!("{jails}/{}", names[0]).into(),
            second: format!("{jails}/{}", names[1]).into(),
            source_url: source.into(),
        })
    })
}

/// What an image check reads of a dataset, in one call.
struct Recorded {
    /// The source and signature recorded on it; `None` when it has none (a pot made by hand,
    /// imported by the pot CLI or by an older driver).
    provenance: Option<(String, String)>,
    /// See [`Found::snapshots`].
    snapshots: Vec<String>,
}

async fn recorded(host: &Host, dataset: &str) -> Result<Recorded, crate::host::HostError> {
    // The source last: the listing leaves a tab inside the last value alone.
    let rows = host
        .zfs_list_with_snapshots(dataset, &[SIGNATURE_PROP, SOURCE_PROP])
        .await?;
    let provenance =
        rows.iter()
            .find(|r| r.name == dataset)
            .and_then(|r| match r.values.as_slice() {
                [signer, Some(source)] => Some((
                    source.clone(),
                    signer.clone().unwrap_or_else(|| "-".to_string()),
                )),
                _ => None,
            });
    let root = format!("{dataset}/m@");
    let mut snapshots: Vec<String> = rows
        .iter()
        .filter_map(|r| r.name.strip_prefix(&root).map(str::to_string))
        .collect();
    snapshots.sort();
    Ok(Recorded {
        provenance,
        snapshots,
    })
}

fn configured_keynums(image: &ImageRef, policy: &ImagePolicy) -> Result<Vec<String>, EngineError> {
    super::verify::load_pubkeys(image, policy).map(|keys| {
        keys.iter()
            .map(|(_, k)| super::verify::hex(k.keynum().as_ref()))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_differ_by_source_and_lead_back_to_pots_name() {
        let a = ImageRef::parse("http://a.example/i", "web", "1.0").unwrap();
        let b = ImageRef::parse("http://b.example/i", "web", "1.0").unwrap();
        let c = ImageRef::parse("http://a.example/i", "web", "1_0").unwrap();
        assert_eq!(a.local_name(), c.local_name(), "pot's names collide");
        let names = [own_name(&a), own_name(&b), own_name(&c)];
        assert!(names[0] != names[1] && names[0] != names[2] && names[1] != names[2]);
        assert!(names[0].starts_with("web_1_0_") && names[0].len() == "web_1_0_".len() + 16);
        assert_eq!(lock_names(&names[0]), [names[0].as_str(), "web_1_0"]);
        assert_eq!(lock_names("web_1_0"), ["web_1_0"]);
    }

    #[test]
    fn signers_round_trip_and_meet_the_policy() {
        for s in [Signer::Unsigned, Signer::Key("0a1b".into())] {
            assert_eq!(Signer::parse(&s.value()), Some(s));
        }
        assert_eq!(Signer::parse("-"), None);
        let mut policy = ImagePolicy::default();
        assert_eq!(Signer::Unsigned.refused_by(&policy, &[]), None);
        policy.require_signature = true;
        assert!(Signer::Unsigned.refused_by(&policy, &[]).is_some());
        policy.pubkeys = vec!["/k.pub".into()];
        let k = Signer::Key("0a1b".into());
        assert_eq!(k.refused_by(&policy, &["0a1b".into()]), None);
        assert!(k.refused_by(&policy, &["ffff".into()]).is_some());
    }
}

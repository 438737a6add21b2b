//! The two artifact layouts, written on push and checked on pull.
//!
//! A plugin follows the wasm OCI artifact layout of the component-model
//! ecosystem (wasm-pkg-tools' oci-wasm, wasmCloud): config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer.
//! Other tools can therefore push plugins we pull and pull plugins we
//! push. A probe package (the `.tar.gz` the engine already reads) has a
//! layout of our own with the same shape: one config, one layer.
//!
//! Pull-side checks are strict on purpose: exactly one layer, known media
//! types, the kind the caller asked for. An artifact that is anything
//! else is refused with the reason, never guessed at: the engine is about
//! to run what we return. The config blob is not fetched on pull; nothing
//! in it changes what the engine runs, and the layer is verified by its
//! own digest.

use std::fmt;

use serde::Deserialize;
use serde_json::json;

use crate::digest::Digest;
use crate::error::OciError;

/// Media type of the manifests we write and the only one we read.
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `Accept` for manifest GETs. Index and Docker types are listed so that
/// a registry hands them over (and we can say what they are) instead of
/// answering 404 as distribution does for a type the client did not
/// accept.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests are a few hundred bytes; a registry serving megabytes is
/// broken or hostile. Same cap as distribution's own.
pub(crate) const MAX_MANIFEST_SIZE: u64 = 4 << 20;

const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
const PACKAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasmprobe.package.config.v1+json";
const PACKAGE_LAYER_MEDIA_TYPE: &str = "application/vnd.wasmprobe.package.v1.tar+gzip";

/// What an artifact holds, told apart by its config media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A single WebAssembly component (`.wasm`).
    Plugin,
    /// A probe package: the `.tar.gz` of a probe file and its plugins.
    Package,
}

impl Kind {
    /// The config media type, also written as the manifest's
    /// `artifactType`.
    pub fn config_media_type(self) -> &'static str {
        match self {
            Self::Plugin => WASM_CONFIG_MEDIA_TYPE,
            Self::Package => PACKAGE_CONFIG_MEDIA_TYPE,
        }
    }

    /// The media type of the single layer holding the bytes.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Self::Plugin => WASM_LAYER_MEDIA_TYPE,
            Self::Package => PACKAGE_LAYER_MEDIA_TYPE,
        }
    }

    fn from_config_media_type(media_type: &str) -> Option<Self> {
        [Self::Plugin, Self::Package]
            .into_iter()
            .find(|k| k.config_media_type() == media_type)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plugin => "plugin",
            Self::Package => "probe package",
        })
    }
}

/// A content descriptor as manifests write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.as_str(),
            "size": self.size,
        })
    }
}

/// Everything a push uploads, built before the first request so that a
/// failure half-way leaves nothing but unreferenced blobs behind.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) config: Vec<u8>,
    pub(crate) config_descriptor: Descriptor,
    pub(crate) layer_descriptor: Descriptor,
    pub(crate) manifest: Vec<u8>,
    pub(crate) digest: Digest,
}

/// Builds config and manifest for `layer`. `created` is an RFC 3339
/// timestamp; it is the only input that is not the content itself, so two
/// pushes of the same bytes differ in digest only through it.
pub(crate) fn build(kind: Kind, layer: &[u8], created: &str) -> Built {
    let layer_descriptor = Descriptor::of(kind.layer_media_type(), layer);
    let layer_digests = [layer_descriptor.digest.as_str()];
    // `Value::to_string` cannot fail, unlike `to_vec`, and writes keys in
    // sorted order: the same inputs always give the same digest.
    let config = match kind {
        Kind::Plugin => json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": layer_digests,
            "component": null,
        }),
        Kind::Package => json!({
            "created": created,
            "layerDigests": layer_digests,
        }),
    }
    .to_string()
    .into_bytes();
    let config_descriptor = Descriptor::of(kind.config_media_type(), &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": kind.config_media_type(),
        "config": config_descriptor.to_json(),
        "layers": [layer_descriptor.to_json()],
    })
    .to_string()
    .into_bytes();
    let digest = Digest::of(&manifest);
    Built {
        config,
        config_descriptor,
        layer_descriptor,
        manifest,
        digest,
    }
}

/// What a checked manifest says about the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) kind: Kind,
    pub(crate) layer: Descriptor,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    media_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Checks that `bytes` is the manifest of a wasmprobe artifact and says
/// which kind. `content_type` is the registry's header, used only when the
/// body does not name its media type. `label` names the artifact in
/// errors (a reference, or a digest for cache entries).
pub(crate) fn check(
    label: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Checked, OciError> {
    let refuse = |reason: String| OciError::NotAnArtifact {
        reference: label.to_owned(),
        reason,
    };
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| refuse(format!("the manifest is not valid JSON: {e}")))?;
    let header = content_type.map(|c| c.split(';').next().unwrap_or_default().trim());
    let media_type = envelope.media_type.as_deref().or(header);
    match media_type {
        Some(MANIFEST_MEDIA_TYPE) | None => {}
        Some(INDEX_MEDIA_TYPE | DOCKER_LIST_MEDIA_TYPE) => {
            return Err(refuse(
                "it is an image index (a list of manifests, e.g. one per platform); \
                 a wasmprobe artifact is a single manifest"
                    .to_owned(),
            ));
        }
        Some(DOCKER_MANIFEST_MEDIA_TYPE) => {
            return Err(refuse(
                "it is a Docker container image manifest, not an OCI wasm artifact".to_owned(),
            ));
        }
        Some(other) => {
            return Err(refuse(format!(
                "manifest media type {other:?} is not {MANIFEST_MEDIA_TYPE}"
            )));
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| refuse(format!("malformed manifest: {e}")))?;
    if manifest.schema_version != 2 {
        return Err(refuse(format!(
            "schemaVersion is {}, not 2",
            manifest.schema_version
        )));
    }
    let config_type = manifest.config.media_type.as_str();
    let Some(kind) = Kind::from_config_media_type(config_type) else {
        return Err(refuse(format!(
            "config media type {config_type:?} is neither a wasm component ({WASM_CONFIG_MEDIA_TYPE}) \
             nor a wasmprobe package ({PACKAGE_CONFIG_MEDIA_TYPE})"
        )));
    };
    if let Some(artifact_type) = &manifest.artifact_type
        && artifact_type != config_type
    {
        return Err(refuse(format!(
            "artifactType {artifact_type:?} contradicts config media type {config_type:?}"
        )));
    }
    let count = manifest.layers.len();
    let mut layers = manifest.layers.into_iter();
    let (Some(layer), None) = (layers.next(), layers.next()) else {
        return Err(refuse(if count == 0 {
            format!("it has no layer; a wasmprobe {kind} has exactly one")
        } else {
            format!("it has {count} layers; a wasmprobe {kind} has exactly one")
        }));
    };
    if layer.media_type != kind.layer_media_type() {
        return Err(refuse(format!(
            "layer media type {:?} is not {} as a {kind} requires",
            layer.media_type,
            kind.layer_media_type()
        )));
    }
    Ok(Checked { kind, layer })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = "2026-01-02T03:04:05Z";

    fn with(manifest: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        edit(&mut v);
        v.to_string().into_bytes()
    }

    fn reason(bytes: &[u8]) -> String {
        check("r.io/a:v1", bytes, None).unwrap_err().to_string()
    }

    #[test]
    fn plugin_layout_matches_the_wasm_oci_artifact() {
        let built = build(Kind::Plugin, b"\0asm", CREATED);
        let m: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["artifactType"], "application/vnd.wasm.config.v0+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.wasm.config.v0+json"
        );
        assert_eq!(
            m["config"]["digest"],
            built.config_descriptor.digest.as_str()
        );
        assert_eq!(m["config"]["size"], built.config.len());
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
        assert_eq!(m["layers"][0]["digest"], Digest::of(b"\0asm").as_str());
        assert_eq!(m["layers"][0]["size"], 4);
        assert_eq!(built.digest, Digest::of(&built.manifest));

        let c: serde_json::Value = serde_json::from_slice(&built.config).unwrap();
        assert_eq!(c["created"], CREATED);
        assert_eq!(c["architecture"], "wasm");
        assert_eq!(c["os"], "wasip2");
        assert_eq!(c["layerDigests"][0], Digest::of(b"\0asm").as_str());
        assert!(c["component"].is_null());
    }

    #[test]
    fn package_layout_uses_our_media_types() {
        let built = build(Kind::Package, b"tgz", CREATED);
        let m: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
        assert_eq!(
            m["artifactType"],
            "application/vnd.wasmprobe.package.config.v1+json"
        );
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.wasmprobe.package.config.v1+json"
        );
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.wasmprobe.package.v1.tar+gzip"
        );
    }

    #[test]
    fn build_is_deterministic_for_the_same_inputs() {
        let a = build(Kind::Plugin, b"x", CREATED);
        let b = build(Kind::Plugin, b"x", CREATED);
        assert_eq!(a.digest, b.digest);
        assert_ne!(
            a.digest,
            build(Kind::Plugin, b"x", "2026-01-02T03:04:06Z").digest
        );
    }

    #[test]
    fn check_accepts_what_build_writes() {
        for kind in [Kind::Plugin, Kind::Package] {
            let built = build(kind, b"bytes", CREATED);
            let checked = check("r", &built.manifest, None).unwrap();
            assert_eq!(checked.kind, kind);
            assert_eq!(checked.layer, built.layer_descriptor);
        }
    }

    #[test]
    fn check_accepts_a_manifest_without_artifact_type_or_media_type() {
        // As oci-wasm and older tools write it.
        let built = build(Kind::Plugin, b"w", CREATED);
        let bare = with(&built.manifest, |v| {
            let o = v.as_object_mut().unwrap();
            o.remove("artifactType");
            o.remove("mediaType");
        });
        assert_eq!(
            check("r", &bare, Some(MANIFEST_MEDIA_TYPE)).unwrap().kind,
            Kind::Plugin
        );
        assert_eq!(check("r", &bare, None).unwrap().kind, Kind::Plugin);
    }

    #[test]
    fn check_refuses_other_layouts_with_the_reason() {
        let m = build(Kind::Plugin, b"w", CREATED).manifest;
        let layer = |v: &serde_json::Value| v["layers"][0].clone();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not valid JSON"),
            (
                with(&m, |v| v["mediaType"] = json!(INDEX_MEDIA_TYPE)),
                "image index",
            ),
            (
                with(&m, |v| v["mediaType"] = json!(DOCKER_MANIFEST_MEDIA_TYPE)),
                "Docker container image",
            ),
            (
                with(&m, |v| v["mediaType"] = json!("text/plain")),
                "\"text/plain\" is not",
            ),
            (
                with(&m, |v| v["schemaVersion"] = json!(1)),
                "schemaVersion is 1",
            ),
            (
                with(&m, |v| {
                    v["config"]["mediaType"] = json!("application/vnd.oci.image.config.v1+json")
                }),
                "neither a wasm component",
            ),
            (
                with(&m, |v| v["artifactType"] = json!("application/x")),
                "contradicts",
            ),
            (with(&m, |v| v["layers"] = json!([])), "has no layer"),
            (
                with(&m, |v| {
                    let l = layer(v);
                    v["layers"] = json!([l.clone(), l])
                }),
                "has 2 layers",
            ),
            (
                with(&m, |v| {
                    v["layers"][0]["mediaType"] = json!("application/octet-stream")
                }),
                "is not application/wasm as a plugin requires",
            ),
            (
                with(&m, |v| v["layers"][0]["digest"] = json!("sha512:00")),
                "only sha256",
            ),
            (
                with(&m, |v| v["layers"][0]["size"] = json!(-1)),
                "malformed manifest",
            ),
        ];
        for (bytes, needle) in cases {
            let e = reason(&bytes);
            assert!(
                e.starts_with("r.io/a:v1 is not a wasmprobe artifact: "),
                "{e}"
            );
            assert!(e.contains(needle), "{needle:?} not in: {e}");
        }
        let e = check(
            "x",
            &with(&m, |v| {
                v.as_object_mut().unwrap().remove("mediaType");
            }),
            Some(INDEX_MEDIA_TYPE),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("image index"), "{e}");
    }
}

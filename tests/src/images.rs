//! OCI images built from a root filesystem, for clients that take only images (containerd's
//! CRI plugin, `ctr containers restore`): imported with `ctr images import`.

use std::path::Path;

/// `sha256:<hex>` of `data`, as OCI names blobs.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Writes an OCI image layout, as a tar archive, holding one image per `(name, command)`: each
/// a single uncompressed layer made of `rootfs`, named by containerd's name annotation.
pub fn write_oci_archive(archive: &Path, rootfs: &Path, images: &[(&str, Vec<&str>)]) {
    let mut layer = tar::Builder::new(Vec::new());
    layer.follow_symlinks(false);
    layer.append_dir_all(".", rootfs).expect("layer");
    let layer = layer.into_inner().expect("layer");
    let layer_digest = sha256(&layer);
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut blobs = vec![(layer_digest.clone(), layer.clone())];
    let mut manifests = Vec::new();
    for (name, command) in images {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture, "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": command, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}]
        }))
        .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(':').next()}
        }));
        blobs.push((sha256(&config), config));
        blobs.push((sha256(&manifest), manifest));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
    let mut out = tar::Builder::new(std::fs::File::create(archive).expect("archive"));
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut header, path, data).expect("archive entry");
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for (digest, data) in &blobs {
        add(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")), data);
    }
    out.finish().expect("archive");
}

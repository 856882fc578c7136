use super::*;

#[test]
fn explain_names_each_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pot.conf"),
        "POT_EXTIF=vtnet0\nPOT_GATEWAY=10.192.0.1\n",
    )
    .unwrap();
    let settings = EngineConfig::explain(&Overrides {
        pot_conf_dir: Some(dir.path().to_path_buf()),
        zfs_root: Some("tank/pot".into()),
        gateway: Some("10.192.0.9".into()),
        ..Default::default()
    })
    .unwrap();
    let get = |key: &str| settings.iter().find(|s| s.key == key).unwrap().clone();
    let extif = get("extif");
    assert_eq!(
        (extif.value.as_str(), extif.source),
        ("vtnet0", Source::PotConf)
    );
    assert_eq!(extif.file, Some(dir.path().join("pot.conf")));
    // The agent config wins over pot.conf.
    let gateway = get("gateway");
    assert_eq!(
        (gateway.value.as_str(), gateway.source),
        ("10.192.0.9", Source::AgentConfig)
    );
    assert_eq!(get("zfs_root").source, Source::AgentConfig);
    let fs_root = get("fs_root");
    assert_eq!(
        (fs_root.value.as_str(), fs_root.source),
        ("/opt/pot", Source::Default)
    );
}

#[test]
fn defaults_match_pot() {
    let cfg = EngineConfig::resolve(&Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(cfg.zfs_root, "zroot/pot");
    assert_eq!(cfg.fs_root, PathBuf::from("/opt/pot"));
    assert_eq!(cfg.network.gateway, Ipv4Addr::new(10, 192, 0, 1));
    assert!(cfg.args_quote_compat);
    assert_eq!(
        cfg.devd_socket,
        Some(PathBuf::from("/var/run/devd.seqpacket.pipe"))
    );
    let off = EngineConfig::resolve(&Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        devd_socket: Some(String::new()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(off.devd_socket, None);
}

#[test]
fn pot_conf_overrides_defaults_and_agent_overrides_pot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pot.default.conf"),
        "POT_ZFS_ROOT=zroot/pot\nPOT_FS_ROOT=/opt/pot\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pot.conf"),
        "# local\nPOT_ZFS_ROOT=\"tank/pot\" # comment\nPOT_EXTIF=vtnet0\n",
    )
    .unwrap();
    let mut o = Overrides {
        pot_conf_dir: Some(dir.path().into()),
        ..Default::default()
    };
    let cfg = EngineConfig::resolve(&o).unwrap();
    assert_eq!(cfg.zfs_root, "tank/pot");
    assert_eq!(cfg.network.extif, "vtnet0");
    o.zfs_root = Some("other/pot".into());
    assert_eq!(EngineConfig::resolve(&o).unwrap().zfs_root, "other/pot");
}

#[test]
fn bad_values_name_the_key() {
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        zfs_root: Some("/bad//name".into()),
        ..Default::default()
    };
    assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "zfs_root");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        gateway: Some("10.1".into()),
        ..Default::default()
    };
    assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "gateway");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        fs_root: Some("relative".into()),
        ..Default::default()
    };
    assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "fs_root");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        devd_socket: Some("run/devd.pipe".into()),
        ..Default::default()
    };
    assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "devd_socket");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        image_max_size: Some("12X".into()),
        ..Default::default()
    };
    assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "image_max_size");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        image_cache_max: Some("ten".into()),
        ..Default::default()
    };
    assert_eq!(
        EngineConfig::resolve(&o).unwrap_err().key,
        "image_cache_max"
    );
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        require_signature: Some(true),
        ..Default::default()
    };
    assert_eq!(
        EngineConfig::resolve(&o).unwrap_err().key,
        "require_signature"
    );
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        signature_pubkeys: vec!["/nonexistent/key.pub".into()],
        ..Default::default()
    };
    assert_eq!(
        EngineConfig::resolve(&o).unwrap_err().key,
        "signature_pubkeys"
    );
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    for (ca_file, why) in [
        (Path::new("/nonexistent/ca.pem"), "No such file"),
        (&tls.join("server.key"), "no PEM certificate"),
    ] {
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            image_ca_file: Some(ca_file.into()),
            ..Default::default()
        };
        let e = EngineConfig::resolve(&o).unwrap_err();
        assert_eq!(e.key, "image_ca_file");
        assert!(e.reason.contains(why), "{e:?}");
    }
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        image_ca_file: Some(tls.join("ca.pem")),
        ..Default::default()
    };
    assert_eq!(
        EngineConfig::resolve(&o).unwrap().image.ca_file,
        Some(tls.join("ca.pem"))
    );
}

#[test]
fn sizes_take_binary_suffixes() {
    assert_eq!(parse_size("k", "1048576").unwrap(), 1 << 20);
    assert_eq!(parse_size("k", "512K").unwrap(), 512 << 10);
    assert_eq!(parse_size("k", "100MiB").unwrap(), 100 << 20);
    assert_eq!(parse_size("k", "20G").unwrap(), 20 << 30);
    assert_eq!(parse_size("k", "1TB").unwrap(), 1 << 40);
    for bad in ["", "0", "-1", "G", "1.5G", "99999999999T"] {
        assert!(parse_size("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn pot_default_signature_pubkey_makes_signatures_required() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pot.pub");
    std::fs::write(
        &key,
        "untrusted comment: test public key\nRWQBAgMEBQYHCAECAwQFBgcIAQIDBAUGBwgBAgMEBQYHCAECAwQFBgcI\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pot.conf"),
        format!("POT_DEFAULT_SIGNATURE_PUBKEY={}\n", key.display()),
    )
    .unwrap();
    let mut o = Overrides {
        pot_conf_dir: Some(dir.path().into()),
        ..Default::default()
    };
    let cfg = EngineConfig::resolve(&o).unwrap();
    assert_eq!(cfg.image.pubkeys, vec![key.clone()]);
    assert!(cfg.image.require_signature);
    o.require_signature = Some(false);
    assert!(!EngineConfig::resolve(&o).unwrap().image.require_signature);
}

#[test]
fn trust_boundary_options_are_checked() {
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        allowed_host_paths: vec!["data".into()],
        ..Default::default()
    };
    assert_eq!(
        EngineConfig::resolve(&o).unwrap_err().key,
        "allowed_host_paths"
    );
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        allowed_attributes: vec!["enforce_statfs".into(), "persistent".into()],
        ..Default::default()
    };
    let e = EngineConfig::resolve(&o).unwrap_err();
    assert_eq!(e.key, "allowed_attributes");
    assert!(e.reason.contains("\"persistent\""), "{e}");
    let o = Overrides {
        pot_conf_dir: Some("/nonexistent".into()),
        allowed_image_dirs: vec!["/srv/images".into(), "images".into()],
        ..Default::default()
    };
    let e = EngineConfig::resolve(&o).unwrap_err();
    assert_eq!(e.key, "allowed_image_dirs");
    assert!(e.reason.contains("images is not an absolute path"), "{e}");
}

/// Answers every key with a value, or only `Some(key)`.
struct Agent(Option<&'static str>);

impl Values for Agent {
    fn text(&self, key: &str) -> Option<String> {
        self.has(key).then(|| "x".to_string())
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.has(key).then_some(true)
    }

    fn texts(&self, key: &str) -> Vec<String> {
        self.text(key).into_iter().collect()
    }

    fn pairs(&self, key: &str) -> BTreeMap<String, String> {
        self.text(key).map(|v| (v.clone(), v)).into_iter().collect()
    }
}

impl Agent {
    fn has(&self, key: &str) -> bool {
        self.0.is_none_or(|only| only == key)
    }
}

#[test]
fn each_setting_fills_its_own_field_and_every_field_has_a_setting() {
    for def in SETTINGS {
        let o = Overrides::from_values(&Agent(Some(def.name)));
        let given: Vec<&str> = SETTINGS
            .iter()
            .filter(|d| d.given(&o))
            .map(|d| d.name)
            .collect();
        assert_eq!(given, [def.name]);
    }
    // A field without a row would stay empty. The proxies are no agent-config key: they come
    // from the environment (see `AgentConfig::decode`), set here so they are not empty either.
    let all = format!(
        "{:?}",
        Overrides {
            proxies: Proxies::from_env(|_| Some("u:p@proxy:1".to_string())),
            ..Overrides::from_values(&Agent(None))
        }
    );
    for empty in ["None", "[]", "{}"] {
        assert!(!all.contains(empty), "{all}");
    }
}

#[test]
fn every_pot_variable_of_the_table_is_read_from_pot_conf() {
    let dir = tempfile::tempdir().unwrap();
    let conf: String = SETTINGS
        .iter()
        .filter_map(|def| def.pot)
        .map(|var| format!("{}={}\n", var.name, var.default))
        .collect();
    std::fs::write(dir.path().join("pot.conf"), conf).unwrap();
    let settings = EngineConfig::explain(&Overrides {
        pot_conf_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    let from_pot: Vec<&str> = settings
        .iter()
        .filter(|s| s.source == Source::PotConf)
        .map(|s| s.key)
        .collect();
    assert_eq!(
        from_pot,
        [
            "zfs_root",
            "fs_root",
            "cache_dir",
            "tmp_dir",
            "network",
            "netmask",
            "gateway",
            "dns_ip",
            "extif",
            "extra_extif",
            "extif_addr",
            "vpn_extif",
            "vpn_networks",
            "isolate_vnet_pots",
            "network_stack",
            "signature_pubkeys"
        ]
    );
}

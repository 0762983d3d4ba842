//! The example configurations under scenarios/sim/ stay valid.

use shadowgate_sim::{Profile, SimConfig};

#[test]
fn every_example_config_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/sim");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg = SimConfig::from_toml_str(&text, &path.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            seen.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                cfg,
            ));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpp-identical.toml",
            "cpp.toml",
            "faulty.toml",
            "python.toml",
            "stall.toml"
        ]
    );
    // The annotated defaults are the defaults.
    let defaults = |p| SimConfig::default_for(p);
    let by_name = |n: &str| {
        seen.iter()
            .find(|(x, _)| x == n)
            .map(|(_, c)| c.clone())
            .unwrap()
    };
    assert_eq!(by_name("python.toml"), defaults(Profile::Python));
    assert_eq!(by_name("cpp.toml"), defaults(Profile::Cpp));
    assert!(!by_name("cpp-identical.toml").auth.enabled);
}

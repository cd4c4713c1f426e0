//! The model catalog: the compiled-in data parses, every entry is consistent,
//! and `resolve` handles paths, cached names, uncached names and unknown names.

use pistil_runtime::catalog::{self, Catalog, Source};

#[test]
fn catalog_parses_and_is_consistent() {
    let cat = catalog::catalog().expect("compiled-in catalog parses");
    cat.validate().expect("catalog entries are consistent");
    for name in [
        "gemma3:270m",
        "deepseek-r1:1.5b",
        "deepseek-r1:7b",
        "deepseek-r1:8b",
        "deepseek-r1:8b-qwen3",
        "deepseek-r1:14b",
    ] {
        assert!(cat.get(name).is_some(), "{name} in the catalog");
    }
    let g = cat.get("gemma3:270m").unwrap();
    assert_eq!(g.size, Some(253_113_024));
    assert_eq!(g.file_name(), "gemma3-270m.gguf");
    assert!(matches!(g.source, Source::PipParts { .. }));
    assert!(!g.thinks);
    let r7 = cat.get("deepseek-r1:7b").unwrap();
    assert_eq!(r7.size, Some(4_683_073_248));
    assert_eq!(r7.architecture, "qwen2");
    for e in &cat.models {
        if e.name.starts_with("deepseek-r1") {
            assert!(e.thinks, "{}: R1 models think", e.name);
            assert!(matches!(e.source, Source::Https { .. }), "{}", e.name);
        }
    }
}

#[test]
fn catalog_rejects_inconsistent_entries() {
    let base = r#"
[[model]]
name = "x:1b"
description = "d"
architecture = "llama"
parameters = 1
quant = "Q4_K_M"
size = 10
sha256 = "SHA"
min_ram_mb = 1
license = "l"
chat = "c"
thinks = false
[model.source]
kind = "pip-parts"
packages = ["a", "b"]
members = ["a/data/f"]
"#;
    let good_sha = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
    let err = Catalog::parse(&base.replace("SHA", good_sha))
        .unwrap_err()
        .to_string();
    assert!(err.contains("one member per package"), "{err}");
    let err = Catalog::parse(&base.replace("SHA", "abc"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("64 lowercase hex"), "{err}");
    let ok = base.replace("SHA", good_sha).replace(
        r#"members = ["a/data/f"]"#,
        r#"members = ["a/data/f", "b/data/g"]"#,
    );
    Catalog::parse(&ok).expect("consistent entry parses");
    let twice = format!("{ok}\n{ok}");
    let err = Catalog::parse(&twice).unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    let err = Catalog::parse(&ok.replace("thinks = false", "thinks = false\nbogus = 1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
}

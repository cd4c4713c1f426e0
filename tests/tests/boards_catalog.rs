//! The board profiles and the fit check's suggestions name catalog models:
//! every name must exist in the runtime's catalog, and the sizes the fit
//! check uses for its suggestions must be the catalog's.

use pistil_boards::fit::SUGGESTIONS;
use pistil_boards::ProfileSet;
use pistil_runtime::catalog;

#[test]
fn profile_default_models_are_in_the_catalog() {
    let set = ProfileSet::builtin().expect("built-in profiles parse");
    for (p, _) in set.iter() {
        for tier in &p.memory {
            let entry = catalog::find(&tier.default_model).expect("catalog parses");
            assert!(
                entry.is_some(),
                "profile {} ({} MB) names {}, which is not in the catalog",
                p.id,
                tier.ram_mb,
                tier.default_model
            );
        }
    }
}

#[test]
fn suggestion_sizes_match_the_catalog() {
    for (name, size) in SUGGESTIONS {
        let entry = catalog::find(name)
            .expect("catalog parses")
            .unwrap_or_else(|| panic!("{name} is not in the catalog"));
        assert_eq!(entry.size, Some(*size), "{name}");
    }
    // Largest first, so the first that fits is the best suggestion.
    assert!(SUGGESTIONS.windows(2).all(|w| w[0].1 > w[1].1));
}

#[test]
fn default_models_fit_their_tier_on_paper() {
    // Weights of the default model must leave room for the OS reserve in the
    // tier's nominal RAM (a sanity check on the profile data).
    let set = ProfileSet::builtin().unwrap();
    for (p, _) in set.iter() {
        for tier in &p.memory {
            let entry = catalog::find(&tier.default_model).unwrap().unwrap();
            let weights_mb = entry.size.unwrap() / (1 << 20);
            assert!(
                weights_mb + u64::from(tier.reserve_mb) < u64::from(tier.ram_mb) * 7 / 10,
                "{} {} MB: {} ({weights_mb} MiB) is too big for the tier",
                p.id,
                tier.ram_mb,
                tier.default_model
            );
        }
    }
}

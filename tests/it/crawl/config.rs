//! The documented `[crawl]` section (bus.toml.fragment, or bus.toml once merged)
//! parses, builds every stage, and states the defaults the code uses.

use std::path::Path;

use taskbus::crawl::{
    CrawlConfig, DedupConfig, ExecutorRegistry, Fetcher, FetcherConfig, FollowConfig, Parser,
};

/// The `[crawl]` table of the documented config and the file it came from.
fn documented() -> (CrawlConfig, &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (name, text) = ["bus.toml.fragment", "bus.toml"]
        .into_iter()
        .find_map(|name| {
            std::fs::read_to_string(root.join(name))
                .ok()
                .map(|text| (name, text))
        })
        .expect("bus.toml.fragment or bus.toml at the crate root");
    let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let crawl = table
        .get("crawl")
        .cloned()
        .unwrap_or_else(|| panic!("{name} has no [crawl]"));
    (
        crawl
            .try_into()
            .unwrap_or_else(|e| panic!("{name} [crawl]: {e}")),
        name,
    )
}

#[tokio::test]
async fn documented_section_builds_every_stage() {
    let (config, name) = documented();
    ExecutorRegistry::from_config(&config.executors).unwrap_or_else(|e| panic!("{name}: {e}"));
    Fetcher::new(&config.fetcher).unwrap_or_else(|e| panic!("{name}: {e}"));
    Parser::new(&config.parser()).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn fragment_states_the_code_defaults() {
    let (config, name) = documented();
    if name != "bus.toml.fragment" {
        return;
    }
    assert_eq!(
        format!("{:?}", config.fetcher),
        format!("{:?}", FetcherConfig::default())
    );
    assert_eq!(
        format!("{:?}", config.dedup),
        format!("{:?}", DedupConfig::default())
    );
    assert_eq!(
        format!("{:?}", config.follow),
        format!("{:?}", FollowConfig::default())
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (text, key) in [
        ("[fetcher]\nglobal_concurency = 3", "global_concurency"),
        ("[dedup]\ncapacty = 3", "capacty"),
        (
            "[[executors]]\nname = \"a\"\nurl_template = \"x\"",
            "url_template",
        ),
        (
            "[[parsers]]\nname = \"a\"\n[[parsers.follow]]\nselektor = \"a\"",
            "selektor",
        ),
        ("fetchr = 1", "fetchr"),
    ] {
        let error = toml::from_str::<CrawlConfig>(text).unwrap_err().to_string();
        assert!(error.contains(key), "{error}");
    }
}

//! The config file (`--config`): TOML into the flags, then the same merge and validation as at
//! startup, in both modes. Never a panic; every refusal names what was wrong.

#![no_main]

use cubesat::config::{Config, ConfigError, Flags, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(flags) = toml::from_str::<Flags>(text) else {
        return;
    };
    // Paths in the file are read at validation: keep the fuzzer off devices and FIFOs
    // (an operator's config naming /dev/zero is not hostile input).
    let paths = [&flags.tls_cert, &flags.tls_key, &flags.upstream_ca];
    let special = |p: &std::path::Path| p.metadata().is_ok_and(|m| !m.is_file() && !m.is_dir());
    if paths.into_iter().flatten().any(|p| special(p)) {
        return;
    }
    // A spool directory is made (and written to) at validation: not by a fuzzer.
    if flags.spool_dir.is_some() {
        return;
    }
    for mode in [Mode::Dev, Mode::Serve] {
        match Config::load(mode, flags.clone()) {
            Err(error @ ConfigError::Invalid { key, .. }) => {
                assert!(error.to_string().contains(&format!("`{key}`")), "{error}");
            }
            Err(error) => assert!(!error.to_string().is_empty()),
            Ok(_) => {}
        }
    }
});

//! Every input a fuzz target found crashing (`stem-core/fuzz`, see its README) is kept in
//! `tests/fuzz_regressions/<target>-<what>.<ext>` and must now give `Ok` or a typed error
//! **without any panic**, not even one caught inside the reader (the TIFF reader catches the
//! `tiff` crate's panics as a last resort; a caught panic still fails this test).

use std::sync::atomic::{AtomicUsize, Ordering};
use stem_core::io::{Format, read_bytes};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn format_of(target: &str) -> Option<Format> {
    Some(match target {
        "dm" => Format::Dm3,
        "mrc" => Format::Mrc,
        "tiff" => Format::Tiff,
        "npy" => Format::Npy,
        "mib" => Format::Mib,
        "ser" => Format::Ser,
        "emd" => Format::Emd,
        _ => return None,
    })
}

#[test]
fn fuzz_crash_inputs_give_typed_errors_without_panicking() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut checked = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = name.split('-').next().unwrap();
        let Some(format) = format_of(target) else {
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let before = PANICS.load(Ordering::SeqCst);
        let result = read_bytes(&bytes, format);
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            before,
            "{name}: the reader panicked (result {result:?})"
        );
        match result {
            Ok(_)
            | Err(stem_core::Error::InvalidFile { .. })
            | Err(stem_core::Error::Unsupported { .. }) => {}
            Err(e) => panic!("{name}: unexpected error kind {e:?}"),
        }
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no regression inputs found in {}",
        dir.display()
    );
}

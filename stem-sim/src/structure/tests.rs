use crate::structure::builders::{self, ZoneAxis};

#[test]
fn placeholder_structure_tests_compile() {
    let s = builders::srtio3(ZoneAxis::Z001).unwrap();
    assert_eq!(s.atoms().len(), 5);
}

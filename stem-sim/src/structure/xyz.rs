//! Extended-XYZ reading and writing (the format of ASE's `extxyz` module, orthogonal cells).

use std::fmt::Write as _;
use std::path::Path;

use super::{Atom, Structure};
use crate::elements::{atomic_number, symbol};
use crate::error::{Error, Result};

fn invalid(path: &Path, line: usize, reason: impl std::fmt::Display) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    }
}

/// Splits `key=value key="quoted value"` pairs.
fn parse_comment(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    value.push(c);
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key, value));
    }
    out
}

/// Column layout from a `Properties` value: (species column, is_numeric, pos column, rms column).
struct Columns {
    species: usize,
    numeric_species: bool,
    pos: usize,
    rms: Option<usize>,
    total: usize,
}

fn parse_properties(path: &Path, value: &str) -> Result<Columns> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() % 3 != 0 {
        return Err(invalid(
            path,
            2,
            format!("Properties {value:?} is not name:type:count triplets"),
        ));
    }
    let (mut species, mut numeric, mut pos, mut rms) = (None, false, None, None);
    let mut col = 0;
    for t in parts.chunks(3) {
        let count: usize = t[2].parse().map_err(|_| {
            invalid(
                path,
                2,
                format!("bad column count {:?} in Properties", t[2]),
            )
        })?;
        match (t[0], t[1], count) {
            ("species", "S", 1) => species = Some(col),
            ("Z" | "numbers", "I", 1) if species.is_none() => {
                species = Some(col);
                numeric = true;
            }
            ("pos", "R", 3) => pos = Some(col),
            ("rms_displacement_a", "R", 1) => rms = Some(col),
            _ => {}
        }
        col += count;
    }
    match (species, pos) {
        (Some(species), Some(pos)) => Ok(Columns {
            species,
            numeric_species: numeric,
            pos,
            rms,
            total: col,
        }),
        _ => Err(invalid(
            path,
            2,
            format!("Properties {value:?} lacks species:S:1 (or Z:I:1) and pos:R:3"),
        )),
    }
}

fn parse_lattice(path: &Path, value: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = value
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid(path, 2, format!("Lattice {value:?} is not 9 numbers")))?;
    if v.len() != 9 {
        return Err(invalid(
            path,
            2,
            format!("Lattice has {} numbers, expected 9", v.len()),
        ));
    }
    let diag = [v[0], v[4], v[8]];
    let scale = diag.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    for (i, &x) in v.iter().enumerate() {
        if i % 4 != 0 && x.abs() > 1e-9 * scale.max(1.0) {
            return Err(Error::NonOrthogonalCell {
                reason: format!(
                    "{}: lattice component ({}, {}) = {x} Å is not zero (vectors {:?}); \
                     multislice needs an orthogonal cell",
                    path.display(),
                    i / 3,
                    i % 3,
                    v
                ),
            });
        }
    }
    Ok(diag)
}

pub(super) fn read(path: &Path) -> Result<Structure> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    let count_line = lines.next().unwrap_or("");
    let n: usize = count_line.trim().parse().map_err(|_| {
        invalid(
            path,
            1,
            format!("expected the atom count, got {count_line:?}"),
        )
    })?;
    if n == 0 {
        return Err(Error::EmptyStructure {
            what: format!("{} declares 0 atoms", path.display()),
        });
    }
    let comment = lines
        .next()
        .ok_or_else(|| invalid(path, 2, "missing comment line"))?;
    let pairs = parse_comment(comment);
    let find = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let cell = parse_lattice(
        path,
        find("Lattice").ok_or_else(|| {
            invalid(
                path,
                2,
                "no Lattice=\"...\" (an orthogonal cell is required)",
            )
        })?,
    )?;
    let cols = parse_properties(path, find("Properties").unwrap_or("species:S:1:pos:R:3"))?;
    let mut atoms = Vec::with_capacity(n.min(1 << 24));
    for i in 0..n {
        let line_no = i + 3;
        let line = lines
            .next()
            .ok_or_else(|| invalid(path, line_no, format!("file ends after {i} of {n} atoms")))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < cols.total {
            return Err(invalid(
                path,
                line_no,
                format!("{} columns, expected {}", f.len(), cols.total),
            ));
        }
        let sp = f[cols.species];
        let z = if cols.numeric_species || sp.chars().all(|c| c.is_ascii_digit()) {
            let z: u8 = sp
                .parse()
                .map_err(|_| invalid(path, line_no, format!("bad atomic number {sp:?}")))?;
            symbol(z)?;
            z
        } else {
            atomic_number(sp)?
        };
        let num = |c: usize| -> Result<f64> {
            f[c].parse()
                .map_err(|_| invalid(path, line_no, format!("bad number {:?}", f[c])))
        };
        let position_a = [num(cols.pos)?, num(cols.pos + 1)?, num(cols.pos + 2)?];
        let rms_displacement_a = match cols.rms {
            Some(c) => num(c)?,
            None => 0.0,
        };
        atoms.push(Atom {
            z,
            position_a,
            rms_displacement_a,
        });
    }
    Structure::new(cell, atoms)
}

pub(super) fn write(s: &Structure, path: &Path) -> Result<()> {
    let [ax, ay, az] = s.cell_a();
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "{}", s.atoms().len());
    let _ = writeln!(
        out,
        "Lattice=\"{ax} 0 0 0 {ay} 0 0 0 {az}\" \
         Properties=species:S:1:pos:R:3:rms_displacement_a:R:1 pbc=\"T T T\""
    );
    for a in s.atoms() {
        let sym = symbol(a.z)?;
        let [x, y, z] = a.position_a;
        let _ = writeln!(
            out,
            "{sym:<2} {x:>22} {y:>22} {z:>22} {:>22}",
            a.rms_displacement_a
        );
    }
    std::fs::write(path, out).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

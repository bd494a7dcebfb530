//! Lattice estimation from images of crystals (two basis vectors in px, from the autocorrelation).

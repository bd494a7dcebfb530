//! # stem-register (planned)
//!
//! Will hold image-series registration: phase correlation with upsampled-DFT sub-pixel
//! refinement (Guizar-Sicairos et al. 2008), non-rigid NCC + H¹ registration in the manner of
//! Berkels et al. (match-series), a scan-line distortion model, and atom-column positions with
//! uncertainties and bond-length statistics on the registered average.
//!
//! Nothing is implemented yet; see the project issues.

//! # stem-learn (planned)
//!
//! Will hold the candle-based models of the `stem` family: a U-Net atom-column finder, a PACBED
//! thickness/tilt regressor and the phyVAE (a VAE whose loss adds the total variation of its
//! latent maps), with fast CPU convolutions, deterministic training and model bundles
//! (safetensors with an embedded model card). It is the only crate that will depend on candle.
//!
//! Nothing is implemented yet; see the project issues.

//! Scratch timing of the rigid pieces (development aid).
use ndarray::Array2;
use stem_core::ImageView;
use stem_register::rigid::*;
fn main() {
    let a = Array2::from_shape_fn((512, 512), |(i, j)| ((i * 7 + j * 13) % 17) as f32);
    let pc = PhaseCorrelation::new(PhaseCorrelationConfig::default(), [512, 512]).unwrap();
    let t = std::time::Instant::now();
    let s = pc.spectrum(ImageView::from(&a)).unwrap();
    println!("spectrum {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let r = pc.register_spectra(&s, &s).unwrap();
    println!("register {:?} {:?}", t.elapsed(), r);
    let t = std::time::Instant::now();
    let r = pc.register_spectra_near(&s, &s, [0.0, 0.0], 2);
    println!("near {:?} {:?}", t.elapsed(), r);
}

//! File input and output: NPY and PNG export. (Microscope formats are their own module.)

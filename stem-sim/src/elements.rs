//! Elements and their electron-scattering parametrisations (Lobato–Van Dyck 2014, Kirkland).
